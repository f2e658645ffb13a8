"""Scratch folders on a worker: one per job (or archive), gone when it ends, even by a crash.

A folder is named `pixyz-<label>-<pid>-<random>` after the worker process that
made it. A worker killed mid-job (cancel, time limit, node trouble) cannot
clean up, so every new folder's maker first removes those whose process is
gone. Temporary files a step makes with `tempfile` land inside the job's folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import ray

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^pixyz-.+-(?P<pid>\d+)-[a-z0-9_]{8}$")
_current: Path | None = None  # the folder of the job this process is running, if any


def current_folder() -> Path | None:
    """The scratch folder of the job running in this process (None outside a job)."""
    return _current


@contextlib.contextmanager
def scratch_folder(label: str, root: str | None = None) -> Iterator[Path]:
    """A fresh folder under `root` (default: `default_root()`), with `tmp/` inside
    set as this process's temp folder while it exists; removed on exit."""
    root = root or default_root()
    os.makedirs(root, exist_ok=True)
    remove_orphans(root)
    folder = Path(tempfile.mkdtemp(prefix=f"pixyz-{label}-{os.getpid()}-", dir=root))
    (folder / "tmp").mkdir()
    global _current
    previous, tempfile.tempdir = tempfile.tempdir, str(folder / "tmp")
    outer, _current = _current, folder
    try:
        yield folder
    finally:
        tempfile.tempdir, _current = previous, outer
        shutil.rmtree(folder, ignore_errors=True)


def default_root() -> str:
    """`pixyz-scratch` in the system temp folder: the orphan sweep reads only our folders."""
    return os.path.join(tempfile.gettempdir(), "pixyz-scratch")


def orphans(root: str) -> list[str]:
    """The paths of the scratch folders under `root` whose worker process no longer exists."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    return [
        entry.path
        for entry in entries
        if (match := _NAME.match(entry.name))
        and entry.is_dir(follow_symlinks=False)
        and not _alive(int(match["pid"]))
    ]


def remove_orphans(root: str) -> list[str]:
    """Remove the scratch folders under `root` whose worker process no longer exists."""
    removed = []
    for path in orphans(root):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(os.path.basename(path))
    if removed:
        logger.info("removed %d scratch folder(s) of dead workers: %s", len(removed), removed)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@ray.remote(num_cpus=0, max_retries=0)
def sweep_after(root: str | None, pid: int, wait_seconds: float = 30.0) -> list[str]:
    """On the node of a worker that was killed: wait for `pid` to be gone, then remove orphans."""
    deadline = time.monotonic() + wait_seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return remove_orphans(root or default_root())
