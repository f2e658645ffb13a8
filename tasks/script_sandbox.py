"""Running an uploaded `custom` script: a child process with limits, and nothing to steal.

The child (`tasks/script_host.py`) gets a clean environment (no storage or
cloud credentials, no PIXYZ_* settings), its job's scratch folder as its home
and working directory, and these limits, each named in the job's error when
hit: CPU seconds (the job's time limit), address space, size of any file it
writes, open files, and no network (a fresh network namespace with only a
downed loopback; refused, not silently skipped, where the host does not allow
it). It dies with the worker (cancel, time limit, crash). Progress comes back
as JSON lines on a pipe; the result as a JSON file.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1


class ScriptError(RuntimeError):
    """A custom script failed or hit a limit; the message says which."""


@dataclass(frozen=True)
class ScriptLimits:
    cpu_seconds: int
    memory_bytes: int = 4 * 1024**3
    file_bytes: int = 4 * 1024**3
    open_files: int = 1024
    network: bool = False


def run_script(work: Path, spec: dict, storage, pc, input_file: Path | None, report) -> Any:
    """Run the job's script in a sandboxed child; return its result or raise ScriptError."""
    script_path = work / "script.py"
    storage.fs.get_file(storage.job_path(spec["job_id"], "script", "script.py"), str(script_path))
    time_limit = spec["info"]["time_limit"]
    limits = ScriptLimits(cpu_seconds=max(1, int(time_limit) + 1), **spec.get("script_limits", {}))
    host_spec = {
        "script": str(script_path),
        "entrypoint": spec["entrypoint"],
        "params": spec["params"],
        "job_id": spec["job_id"],
        "input_dir": pc.get_input_dir(),
        "input_file": str(input_file) if input_file else None,
        "output_dir": pc.get_output_dir(),
        "info": spec["info"],
        "result_path": str(work / "script-result.json"),
    }
    spec_path = work / "script-spec.json"
    spec_path.write_text(json.dumps(host_spec))
    read_fd, write_fd = os.pipe()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "PIXYZ_EVENTS_FD": str(write_fd),
        # one thread per numeric library: the CPU limit counts every thread's time
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tasks.script_host", str(spec_path)],
            cwd=work,
            env=env,
            pass_fds=(write_fd,),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: _enter_sandbox(limits),
        )
    except subprocess.SubprocessError as exc:
        raise ScriptError(f"cannot start the script sandbox: {exc}") from None
    finally:
        os.close(write_fd)
    forwarder = threading.Thread(target=_forward_events, args=(read_fd, report), daemon=True)
    forwarder.start()
    log_tail = _tail(proc.stdout, 20_000)
    try:
        proc.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise ScriptError(f"time limit of {time_limit:g} s exceeded") from None
    forwarder.join(timeout=5)
    result_path = Path(host_spec["result_path"])
    if not result_path.exists():
        raise ScriptError(_death_reason(proc.returncode, limits) + f": {log_tail()[-2000:]}")
    answer = json.loads(result_path.read_text())
    if "error" in answer:
        hint = f" (the script's memory limit is {limits.memory_bytes >> 20} MiB)"
        message = answer["error"] + (hint if answer["error"].startswith("MemoryError") else "")
        raise ScriptError(message + "\n" + answer.get("traceback", ""))
    return answer["result"]


def _death_reason(returncode: int, limits: ScriptLimits) -> str:
    if returncode == -signal.SIGXCPU:
        return f"the script used its CPU time limit of {limits.cpu_seconds} s"
    if returncode == -signal.SIGXFSZ:
        return f"the script wrote a file larger than its limit of {limits.file_bytes >> 20} MiB"
    if returncode == -signal.SIGKILL:
        return "the script was killed (SIGKILL: out of memory, or cancelled)"
    return f"the script process died (exit code {returncode})"


def _enter_sandbox(limits: ScriptLimits) -> None:
    """In the child, before exec: die with the worker, own session, limits, no network."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not limits.network and libc.unshare(_CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(
            errno,
            f"cannot cut the script off the network ({os.strerror(errno)}); "
            "the operator can allow network access with PIXYZ_SCRIPT_NETWORK=true",
        )


def _forward_events(read_fd: int, report) -> None:
    with os.fdopen(read_fd, "r", encoding="utf-8") as events:
        for line in events:
            try:
                event = json.loads(line)
                report(event["kind"], event["payload"])
            except (ValueError, KeyError):
                logger.warning("ignored a malformed progress event from a script: %.200s", line)


def _tail(stream, limit: int):
    """Drain `stream` in a thread; return a function giving its last `limit` characters."""
    buffer = bytearray()

    def drain():
        for chunk in iter(lambda: stream.read(4096), b""):
            buffer.extend(chunk)
            del buffer[:-limit]

    threading.Thread(target=drain, daemon=True).start()
    return lambda: buffer.decode("utf-8", "replace")
