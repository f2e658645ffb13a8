"""Read a file in a child process, so a reader that segfaults (native parsers do) fails one job, not
the worker.

The child is started with multiprocessing's 'spawn' method: forking a process that runs
threads (a Ray worker does) can deadlock the child on a lock some thread held.

With ``confine_to`` (a folder), the child may open only that folder (read and write; its
temp files go to ``<folder>/tmp``), the Python installation and the system folders
(read), through Landlock where the kernel has it (`tasks/sandbox/landlock.py`): a hostile file
whose references lead elsewhere gets "Permission denied", whichever library follows them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.steps.errors import StepError
from tasks.steps.io.options import LOAD_DEFAULTS, LoadOptions

if TYPE_CHECKING:
    from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.2


def load_isolated(
    path: Path | str,
    options: LoadOptions | None = None,
    timeout: float | None = None,
    confine_to: Path | str | None = None,
) -> Scene:
    """`load` a file in a fresh child process and return its Scene (sent back pickled).

    A child killed by a signal becomes ``ReadError("cannot read 'x.ply' as PLY: the
    reader crashed (signal 11)")`` and one still running after ``timeout`` seconds is
    killed and reported; the calling process survives both. Starting the child costs
    about a second of imports, so use plain `load` for trusted files and small jobs.
    ``timeout=None`` (default) waits as long as the reader takes; ``timeout=600`` suits
    a service that must not hang on one upload. Readers added with `register_reader`
    are sent to the child. ``confine_to``: the folder the child may open files in (see
    the module's docstring); it must hold ``path``. Reference: Python docs,
    multiprocessing "Contexts and start methods".
    """
    from tasks.steps.io.common import read_error
    from tasks.steps.io.registry import reader_for, registered_readers

    options = options or LOAD_DEFAULTS
    path = Path(path)
    # 1. fail fast, in this process, on what needs no reader
    extension, _ = reader_for(path, options.format)
    if not path.is_file():
        raise read_error(path, extension, "file not found")

    # 2. read in the child; it sends back a Scene or a StepError
    started = time.monotonic()
    scene = run_isolated(
        _load_in_child,
        (str(path), options, registered_readers()),
        path,
        extension,
        timeout,
        hard_exit=True,
        confine_to=confine_to,
    )
    logger.debug("isolated load of %s took %.2fs", path.name, time.monotonic() - started)
    return scene


def run_isolated(
    target,
    args: tuple,
    path: Path,
    extension: str,
    timeout: float | None = None,
    hard_exit=False,
    confine_to: Path | str | None = None,
):
    """Call ``target(*args)`` (a module-level function) in a spawned child and return its
    result. StepErrors raised there are raised here; other exceptions, a crash or the
    timeout become a ReadError for ``path``. ``hard_exit`` ends the child with os._exit
    right after it answered, for native libraries that crash while tearing down.
    ``confine_to``: see the module's docstring."""
    from tasks.steps.io.common import read_error

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_call_in_child,
        args=(sender, target, args, hard_exit, str(confine_to) if confine_to else None),
        name=f"read {path.name}",
        # not a daemon: a reader may itself need a child (the FBX reader does)
        daemon=False,
    )
    child.start()
    sender.close()
    try:
        answer = _wait(receiver, child, time.monotonic(), timeout)
    finally:
        receiver.close()
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
            child.join()
    if answer is _TIMED_OUT:
        raise read_error(
            path, extension, f"the reader took longer than {timeout:g} s and was stopped"
        )
    if answer is None:
        code = child.exitcode
        if code is not None and code < 0:
            raise read_error(path, extension, f"the reader crashed (signal {-code})")
        raise read_error(path, extension, f"the reader process exited with code {code}")
    kind, payload = answer
    if kind == "error":
        raise payload
    if kind == "failed":
        raise read_error(path, extension, payload)
    return payload


_TIMED_OUT = object()


def _wait(receiver, child, started: float, timeout: float | None):
    """The child's message, None if it died without one, or _TIMED_OUT."""
    while True:
        if receiver.poll(_POLL_SECONDS):
            try:
                return receiver.recv()
            except EOFError:
                # the child closed its end without sending: it died
                return None
        if not child.is_alive():
            return receiver.recv() if receiver.poll(0) else None
        if timeout is not None and time.monotonic() - started > timeout:
            child.kill()
            return _TIMED_OUT


def in_isolated_child() -> bool:
    """True inside a child started by `run_isolated` (readers can skip isolating again)."""
    return _in_child


_in_child = False


# Read-only for a confined reader besides its folder: the interpreter, its packages, the
# shared libraries and configuration native readers load.
_SYSTEM_READABLE = (
    *("/usr", "/lib", "/lib64", "/bin", "/opt", "/sys/devices/system/cpu"),
    # from /etc only what loaders and libraries read, not its secrets (shadow, ssh keys)
    *("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"),
    *("/etc/fonts", "/etc/ssl", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"),
)
_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


def _confine(folder: str) -> None:
    """Let this process open files only in `folder`, Python's and the system's (Landlock)."""
    from tasks.sandbox import landlock

    temp = os.path.join(folder, "tmp")
    os.makedirs(temp, exist_ok=True)
    tempfile.tempdir = temp
    package = str(Path(__file__).resolve().parents[2])  # the `tasks` package
    readable = [*_SYSTEM_READABLE, sys.prefix, sys.base_prefix, sys.exec_prefix, package]
    if not landlock.restrict_files(readable, [folder, *_DEVICES]):
        logger.debug("no Landlock in this kernel: the reader child is not confined")


def _call_in_child(sender, target, args: tuple, hard_exit: bool, confine_to: str | None) -> None:
    global _in_child
    from tasks.steps.io.common import describe

    _in_child = True
    try:
        if confine_to:
            _confine(confine_to)
        answer = ("ok", target(*args))
    except StepError as exc:
        answer = ("error", exc)
    except (Exception, MemoryError) as exc:
        answer = ("failed", describe(exc))
    try:
        sender.send(answer)
    except Exception as exc:
        # a result that cannot be pickled is a bug in a reader, not in the file
        sender.send(("failed", f"cannot send the result back: {describe(exc)}"))
    finally:
        sender.close()
    if hard_exit:
        # skip interpreter teardown: native libraries (ufbx) may crash freeing their objects
        os._exit(0)


def _load_in_child(path: str, options: LoadOptions, extra_readers: dict) -> Scene:
    from tasks.steps.io import load
    from tasks.steps.io.registry import register_reader

    for extension, reader in extra_readers.items():
        register_reader(extension, reader)
    return load(path, options)
