"""The child process a custom script runs in (`python -m tasks.sandbox.script_host SPEC.json`).

With a `sandbox` in the spec it first builds the sandbox (`tasks/sandbox/linux.py`):

    script_host (new namespaces)  ->  init, PID 1 (file view, fresh /proc, reaps)
                                        ->  the script (own uid, no capabilities)

When init ends, the kernel kills every process left in the PID namespace, so
nothing a script started outlives it. The script process builds the same
ProgramContext built-in processes get, with progress sent to the parent worker
as JSON lines on a pipe, calls the script's entry function, and writes
`{"result": ...}` or `{"error", "traceback"}` to the result file.
"""

from __future__ import annotations

import json
import os
import resource
import runpy
import signal
import sys
import traceback
from pathlib import Path

from tasks.context import ProgramContext
from tasks.sandbox import linux as sandbox_linux


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    if not spec.get("sandbox"):
        return run_script(spec)
    sandbox = spec["sandbox"]
    try:
        # a per-job uid owns no other process; without one, the worker's own count
        processes_before = 0 if sandbox["uid"] is not None else _processes_of(os.getuid())
        sandbox_linux.unshare_namespaces(network=sandbox["network"], as_root=sandbox["as_root"])
    except sandbox_linux.SandboxSetupError as exc:
        return _refuse(
            spec,
            f"{exc.strerror}; custom scripts need Linux namespaces: run the workers as root "
            "or allow unprivileged user namespaces (docs/deploy.md)",
        )
    init = os.fork()
    if init == 0:
        os._exit(_init(spec, sandbox, processes_before))
    _, status = os.waitpid(init, 0)
    return _pass_on(os.waitstatus_to_exitcode(status))


def _init(spec: dict, sandbox: dict, processes_before: int) -> int:
    """PID 1 of the sandbox: build its file view, start the script, reap until it ends."""
    try:
        sandbox_linux.prctl(sandbox_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        sandbox_linux.build_view(sandbox_linux.FileView(**sandbox["view"]))
        sandbox_linux.mount_fresh_proc()
    except (sandbox_linux.SandboxSetupError, OSError) as exc:
        hint = (
            ""
            if sandbox["as_root"]
            else "; a worker that is not root needs user namespaces that may mount (on Ubuntu"
            " 24.04, an AppArmor profile allowing `userns` for Python: docs/deploy.md)"
        )
        return _refuse(spec, f"cannot build the script sandbox: {exc}{hint}")
    script = os.fork()
    if script == 0:
        try:
            sandbox_linux.prctl(sandbox_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            sandbox_linux.drop_to(sandbox["uid"])
            sandbox_linux.deny_syscalls()
            allowed = sandbox["processes"] + processes_before
            resource.setrlimit(resource.RLIMIT_NPROC, (allowed, allowed))
        except OSError as exc:
            os._exit(_refuse(spec, f"cannot drop the script's privileges: {exc}"))
        code = run_script(spec)
        sys.stdout.flush()
        os._exit(code)
    while True:
        pid, status = os.wait()
        if pid == script:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code  # PID 1 cannot kill itself with a signal


def _pass_on(code: int) -> int:
    """End like the script did: by the same signal when init reported one (128 + n)."""
    if code > 128 and code - 128 in (signal.SIGKILL, signal.SIGXCPU, signal.SIGXFSZ):
        signal.signal(code - 128, signal.SIG_DFL)
        os.kill(os.getpid(), code - 128)
    return code


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                pass
    return count


def _refuse(spec: dict, message: str) -> int:
    Path(spec["result_path"]).write_text(json.dumps({"error": f"SandboxError: {message}"}))
    return 0


def run_script(spec: dict) -> int:
    events = os.fdopen(int(os.environ["PIXYZ_EVENTS_FD"]), "w", buffering=1, encoding="utf-8")

    def report(kind: str, payload: dict) -> None:
        events.write(json.dumps({"kind": kind, "payload": payload}) + "\n")

    pc = ProgramContext(
        job_id=spec["job_id"],
        input_dir=Path(spec["input_dir"]),
        input_file=Path(spec["input_file"]) if spec["input_file"] else None,
        output_dir=Path(spec["output_dir"]),
        params=spec["params"],
        info=spec["info"],
        report=report,
    )
    try:
        namespace = runpy.run_path(spec["script"], run_name="pixyz_script")
        entry = namespace.get(spec["entrypoint"])
        if not callable(entry):
            raise AttributeError(f"script has no function '{spec['entrypoint']}'")
        params = _checked_params(namespace.get("Params"), spec["params"])
        result = entry(pc, params)
        answer = {"result": result if result is not None else {}}
        text = json.dumps(answer, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    except BaseException as exc:  # report every failure, SystemExit included, as the job's error
        text = json.dumps(
            {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        )
    Path(spec["result_path"]).write_text(text)
    events.close()
    return 0


class ParamsError(ValueError):
    """The job's params do not fit the script's own `Params` model."""


def _checked_params(model, params: dict):
    """`params` as the script's `Params` model when it declares one (pydantic), else the dict."""
    if model is None:
        return params
    from pydantic import ValidationError

    from tasks.processes._params import as_params_model, field_errors

    model = as_params_model(model)
    if model is None:
        return params
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise ParamsError(field_errors(exc)) from None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
