"""One Ray task per job: stage the inputs, run the process, upload the outputs.

The JobStore's Supervisor launches `run_job` with a `RunSpec` (`tasks/run_spec.py`)
and the job's queue resources, and watches the returned ObjectRef (time limit,
cancellation, retries after a crash). Inside, everything the process reports
goes to the JobStore as it happens; the final outcome is the task's return
value, so it cannot be lost between the two.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import ray

from tasks import records
from tasks.archive import ArchiveError, find_root_file, is_archive, safe_extract
from tasks.context import ProgramContext
from tasks.processes import CUSTOM, load_module
from tasks.run_spec import RunSpec
from tasks.sandbox.scratch import scratch_folder
from tasks.sandbox.scripts import ScriptError, run_script
from tasks.storage import Storage, StorageError
from tasks.subtasks import SubTasks

logger = logging.getLogger(__name__)


class Reporter:
    """Sends a job's progress events to the JobStore without waiting, numbered so the
    store applies them in order (an async actor may run one caller's calls interleaved)."""

    def __init__(self, store, job_id: str, attempt: int):
        self.store = store
        self.job_id, self.attempt = job_id, attempt
        self._sent: list = []
        self._lock = threading.Lock()

    def __call__(self, kind: str, payload: dict) -> None:
        with self._lock:
            seq = len(self._sent)
            self._sent.append(
                self.store.report.remote(self.job_id, self.attempt, seq, kind, payload)
            )

    def flush(self) -> None:
        """Wait until every event sent so far is applied. A report the store could not take
        does not fail the job: its outcome is this task's return value, not the reports."""
        with self._lock:
            sent = list(self._sent)
        try:
            ray.get(sent)
        except Exception as exc:
            logger.warning("job %s: a progress report was not recorded: %s", self.job_id, exc)


def run_job(spec: RunSpec) -> dict:
    """Run one attempt of a job. Returns {"status", "result", "outputs", "error", "traceback"}."""
    storage, job_id = spec.storage, spec.job_id
    report = Reporter(spec.store, job_id, spec.attempt)
    report(
        "status",
        {
            "status": records.RECEIVED,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
        },
    )
    with scratch_folder(job_id[:8], spec.scratch_dir or None) as work:
        outcome = _run_in(work, spec, storage, report)
    report.flush()
    return outcome


def _run_in(work: Path, spec: RunSpec, storage: Storage, report: Reporter) -> dict:
    job_id = spec.job_id
    input_dir, output_dir = work / "inputs", work / "outputs"
    input_dir.mkdir()
    output_dir.mkdir()
    outcome: dict[str, Any] = {
        "status": records.FAILURE,
        "result": None,
        "error": None,
        "traceback": None,
    }
    try:
        started = time.monotonic()
        input_file = _stage_inputs(storage, job_id, input_dir, spec.params)
        if spec.inputs:
            report(
                "step",
                {
                    "info": f"Received {_describe_inputs(input_dir)}",
                    "duration": time.monotonic() - started,
                },
            )
        report("status", {"status": records.STARTED})
        pc = ProgramContext(
            job_id=job_id,
            input_dir=input_dir,
            input_file=input_file,
            output_dir=output_dir,
            params=spec.params,
            info=spec.info,
            report=report,
            tasks=SubTasks(spec.queue_options, spec.info["queue"], report),
        )
        if spec.process.name == CUSTOM:
            result = run_script(work, spec.as_dict(), storage, pc, input_file, report)
        else:
            entry = getattr(load_module(spec.process), spec.entrypoint, None)
            if entry is None:
                raise AttributeError(
                    f"process '{spec.process.name}' has no entry function '{spec.entrypoint}'"
                )
            result = entry(pc, spec.params)
        outcome["result"] = _json_result(result)
        outcome["status"] = records.SUCCESS
    except Exception as exc:  # the process failed: the job records why, the worker lives on
        outcome["error"] = _utf8(user_message(exc))
        # A script's own traceback says more than the sandbox's, which only relayed it.
        told = getattr(exc, "script_traceback", None)
        outcome["traceback"] = _utf8(told or traceback.format_exc())
    started = time.monotonic()
    try:
        outcome["outputs"] = _upload_outputs(storage, job_id, output_dir)
    except OSError as exc:
        outcome.update(
            status=records.FAILURE,
            outputs=[],
            error=str(storage.failure(exc, "saving the job's outputs")),
            traceback=traceback.format_exc(),
        )
    if outcome["outputs"]:
        report(
            "step",
            {
                "info": f"Saved {len(outcome['outputs'])} output file(s)",
                "duration": time.monotonic() - started,
            },
        )
    return outcome


def user_message(exc: BaseException) -> str:
    """One readable line: the toolbox's own errors speak for themselves, others get their type."""
    from tasks.steps.errors import StepError

    if isinstance(exc, StepError | ArchiveError | ScriptError | StorageError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _utf8(text: str) -> str:
    """`text` with lone surrogates (a script's `raise ValueError('\\ud800')`) replaced by '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _stage_inputs(storage: Storage, job_id: str, input_dir: Path, params: dict) -> Path | None:
    files = storage.get_tree(storage.job_path(job_id, "inputs"), input_dir)
    if not files:
        return None
    main = files[0]
    if is_archive(main):
        unpacked = input_dir / Path(main.name).stem.removesuffix(".tar")
        safe_extract(main, unpacked)
        main.unlink()
        return find_root_file(unpacked, params.get("filename"), _model_extensions())
    return main


def _model_extensions() -> list[str]:
    from tasks.steps.io import readable_extensions

    return list(readable_extensions())


def _describe_inputs(input_dir: Path) -> str:
    files = [p for p in input_dir.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    if len(files) == 1:
        return f"input '{files[0].name}' ({size:,} bytes)"
    return f"{len(files)} input files ({size:,} bytes)"


def _upload_outputs(storage: Storage, job_id: str, output_dir: Path) -> list[str]:
    uploaded = []
    for path in sorted(output_dir.rglob("*")):
        if path.is_symlink():
            logger.warning("job %s: output %s is a link and was not saved", job_id, path.name)
            continue
        if not path.is_file():
            continue
        rel = path.relative_to(output_dir).as_posix()
        storage.put_file(path, storage.job_path(job_id, "outputs", rel))
        uploaded.append(rel)
    return uploaded


def _json_default(value):
    for attr in ("tolist", "item"):  # numpy arrays and scalars
        if hasattr(value, attr):
            return getattr(value, attr)()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json_result(result: Any) -> dict:
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise TypeError(
            f"the process returned {type(result).__name__}; it must return a dict (JSON object)"
        )
    text = json.dumps(result, default=_json_default, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 response could carry the result
        raise TypeError(
            "the process returned text that is not valid Unicode (a lone surrogate such as"
            " '\\ud800'); return str values that encode as UTF-8"
        ) from None
    return json.loads(text)
