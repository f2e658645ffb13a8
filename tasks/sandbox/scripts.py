"""Running an uploaded `custom` script: a child process with limits, and nothing to steal.

The child (`tasks/sandbox/script_host.py`) runs in its own mount, PID, IPC and network
namespaces (`tasks/sandbox/linux.py`; inside a user namespace when the worker is
not root). What it can reach:

- files: its job's scratch folder (inputs, outputs, script) is the only writable
  place; the system temp folders, the scratch root (other jobs), a local storage
  folder, Ray's session folder and the home folders are empty; every other mount
  is read-only. The Python installation stays readable.
- processes: only its own (a fresh `/proc`), run as a user id of its own (a
  per-job uid from `SCRIPT_UIDS` when the worker is root), with no capabilities.
- secrets: none; a clean environment (no storage or cloud credentials, no
  PIXYZ_* settings).
- limits, each named in the job's error when hit: CPU seconds (the job's time
  limit), address space, size of any file, bytes written in all (checked twice a
  second), open files, processes, no network unless the operator allows it.

It dies with the worker (cancel, time limit, crash), and everything it started
dies with it. Progress comes back as JSON lines on a pipe; the result as a JSON file.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tasks.sandbox import linux as sandbox_linux

logger = logging.getLogger(__name__)

# Scripts of a root worker run as a uid/gid of their own from this range (see ScriptUids).
SCRIPT_UIDS = range(200_000, 265_536)
_DISK_CHECK_SECONDS = 0.5
# Never hidden, whatever the settings or HOME say: the script's Python needs them.
_SYSTEM_FOLDERS = frozenset(
    {"/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/var", "/opt", "/proc", "/dev"}
)


class ScriptError(RuntimeError):
    """A custom script failed or hit a limit; the message says which (one line), and
    `script_traceback` is the script's own traceback when it raised."""

    def __init__(self, message: str, script_traceback: str | None = None):
        super().__init__(message)
        self.script_traceback = script_traceback


@dataclass(frozen=True)
class ScriptLimits:
    """The operator's `PIXYZ_SCRIPT_*` settings; the CPU seconds follow each job's time limit."""

    memory_bytes: int
    file_bytes: int
    open_files: int
    processes: int
    disk_bytes: int
    network: bool
    cpu_seconds: int = 0

    @classmethod
    def from_settings(cls, settings) -> ScriptLimits:
        return cls(
            memory_bytes=settings.script_memory_bytes,
            file_bytes=settings.script_file_bytes,
            open_files=settings.script_open_files,
            processes=settings.script_processes,
            disk_bytes=settings.script_disk_bytes,
            network=settings.script_network,
        )


def run_script(work: Path, spec: dict, storage, pc, input_file: Path | None, report) -> Any:
    """Run the job's script in a sandboxed child; return its result or raise ScriptError."""
    script_path = work / "script.py"
    storage.fs.get_file(storage.job_path(spec["job_id"], "script", "script.py"), str(script_path))
    time_limit = spec["info"]["time_limit"]
    limits = replace(spec["script_limits"], cpu_seconds=max(1, int(time_limit) + 1))
    as_root = _worker_is_root()
    uid = (spec.get("script_uid") or _uid_from_id(spec["job_id"])) if as_root else None
    (work / "tmp").mkdir(exist_ok=True)
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
        "sandbox": {
            "uid": uid,
            "as_root": as_root,
            "network": limits.network,
            "processes": limits.processes,
            "view": asdict(_file_view(work, storage)),
        },
    }
    spec_path = work / "script-spec.json"
    spec_path.write_text(json.dumps(host_spec))
    if uid is not None:
        _chown_tree(work, uid)
    read_fd, write_fd = os.pipe()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "TMPDIR": str(work / "tmp"),
        "LANG": "C.UTF-8",
        "PIXYZ_EVENTS_FD": str(write_fd),
        # one thread per numeric library: the CPU limit counts every thread's time
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tasks.sandbox.script_host", str(spec_path)],
            cwd=work,
            env=env,
            pass_fds=(write_fd,),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: _enter_sandbox(limits),
        )
    except (subprocess.SubprocessError, OSError) as exc:
        raise ScriptError(f"cannot start the script sandbox: {exc}") from None
    finally:
        os.close(write_fd)
    forwarder = threading.Thread(target=_forward_events, args=(read_fd, report), daemon=True)
    forwarder.start()
    log_tail = _tail(proc.stdout, 20_000)
    over_disk = _watch_disk(proc, work, limits.disk_bytes)
    try:
        proc.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ScriptError(f"time limit of {time_limit:g} s exceeded") from None
    finally:
        _kill_group(proc)  # whatever the script left running dies with it
    forwarder.join(timeout=5)
    if over_disk.is_set():
        raise ScriptError(
            f"the script wrote more than its disk limit of {limits.disk_bytes >> 20} MiB"
        )
    result_path = Path(host_spec["result_path"])
    if not result_path.exists():
        raise ScriptError(_death_reason(proc.returncode, limits) + f": {log_tail()[-2000:]}")
    answer = json.loads(result_path.read_text())
    if "error" in answer:
        raise ScriptError(
            answer["error"] + _hint(answer["error"], limits), answer.get("traceback") or None
        )
    return answer["result"]


def _worker_is_root() -> bool:
    """Root workers give each script its own uid; others sandbox it in a user namespace."""
    return os.geteuid() == 0


def _hint(error: str, limits: ScriptLimits) -> str:
    if error.startswith("MemoryError"):
        return f" (the script's memory limit is {limits.memory_bytes >> 20} MiB)"
    if error.startswith("BlockingIOError") and "Errno 11" in error:
        return f" (the script may run at most {limits.processes} processes)"
    return ""


def _file_view(work: Path, storage) -> sandbox_linux.FileView:
    """Hide the places other jobs and the service keep files; keep Python readable."""
    hidden = ["/tmp", "/var/tmp", "/dev/shm", "/root", "/home", os.path.expanduser("~")]
    hidden += [os.environ.get("TMPDIR", "/tmp"), str(work.parent)]
    if storage.is_local:
        hidden.append(storage.root)
    ray_temp = _ray_temp_dir()
    if ray_temp:
        hidden.append(ray_temp)
    readable = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    package = Path(__file__).resolve().parents[1]  # the `tasks` package
    if not any(package.is_relative_to(os.path.realpath(prefix)) for prefix in readable):
        # A source checkout (editable install): show the `tasks` package, not the checkout.
        hidden.append(str(package.parent))
        readable.add(str(package))
    # Not a system folder (HOME=/ in a container), nor "~" left unexpanded (no home at all).
    hidden = {os.path.realpath(h) for h in hidden if os.path.isabs(h)} - _SYSTEM_FOLDERS
    return sandbox_linux.FileView(
        hidden=sorted(hidden),
        keep_writable=[os.path.realpath(work)],
        keep_readonly=sorted(os.path.realpath(r) for r in readable),
    )


def _ray_temp_dir() -> str | None:
    try:
        import ray

        return ray._private.worker.global_worker.node.get_temp_dir_path()
    except Exception:  # not in a Ray worker (tests of the sandbox alone): nothing to hide
        return None


class ScriptUids:
    """The uids of running scripts, one per job: the JobStore takes one when it launches a
    `custom` job and gives it back when the job ends, so no two running jobs share one."""

    def __init__(self, uids: range = SCRIPT_UIDS):
        self.uids = uids
        self.taken: dict[str, int] = {}

    def take(self, job_id: str) -> int:
        """The job's uid (the same one on every attempt while it runs)."""
        if job_id not in self.taken:
            used = set(self.taken.values())
            free = next((uid for uid in self.uids if uid not in used), None)
            if free is None:
                raise RuntimeError(f"all {len(self.uids)} script uids are in use")
            self.taken[job_id] = free
        return self.taken[job_id]

    def release(self, job_id: str) -> None:
        self.taken.pop(job_id, None)


def _uid_from_id(job_id: str) -> int:
    """For a script launched without a uid from the JobStore (an older store)."""
    return SCRIPT_UIDS.start + int(job_id[:8], 16) % len(SCRIPT_UIDS)


def _chown_tree(folder: Path, uid: int) -> None:
    os.chown(folder, uid, uid)
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def _watch_disk(proc: subprocess.Popen, work: Path, limit: int) -> threading.Event:
    """Kill the script when its scratch folder grows by more than `limit` bytes."""
    over = threading.Event()
    baseline = _usage(work)

    def watch():
        while proc.poll() is None:
            if _usage(work) - baseline > limit:
                over.set()
                _kill_group(proc)
                return
            time.sleep(_DISK_CHECK_SECONDS)

    threading.Thread(target=watch, daemon=True).start()
    return over


def _usage(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass  # deleted while we looked
    return total


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the sandbox's process group; its PID namespace takes every other process with it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _death_reason(returncode: int, limits: ScriptLimits) -> str:
    if returncode == -signal.SIGXCPU:
        return f"the script used its CPU time limit of {limits.cpu_seconds} s"
    if returncode == -signal.SIGXFSZ:
        return f"the script wrote a file larger than its limit of {limits.file_bytes >> 20} MiB"
    if returncode == -signal.SIGKILL:
        return "the script was killed (SIGKILL: out of memory, or cancelled)"
    return f"the script process died (exit code {returncode})"


def _enter_sandbox(limits: ScriptLimits) -> None:
    """In the child, before exec: die with the worker, own session, limits.

    The namespaces are entered by `tasks/sandbox/script_host.py` itself, where a refusal
    can be reported in words (an exception here only says "preexec_fn failed").
    """
    sandbox_linux.prctl(sandbox_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


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
