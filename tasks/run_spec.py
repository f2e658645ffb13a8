"""RunSpec: everything one attempt of a job needs, as the JobStore hands it to `run_job`.

The Supervisor builds one per attempt (`RunSpec.for_attempt`) and the runner
task receives it across the Ray boundary, so every field is picklable. The
custom-script sandbox still reads a mapping (`spec["job_id"]`, `spec.get(...)`):
it gets `as_dict()`, a shallow view, so `script_limits` stays a `ScriptLimits`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.processes import ProcessSpec
    from tasks.sandbox.scripts import ScriptLimits
    from tasks.settings import Settings
    from tasks.storage import Storage


@dataclass(frozen=True)
class RunSpec:
    job_id: str
    attempt: int
    """1 for the first run; each retry (crash, time limit, restart) counts one more."""
    process: ProcessSpec
    entrypoint: str
    """The function of the process (or script) to call: `config.entrypoint`, default `main`."""
    params: dict
    inputs: list[str]
    """The names of the job's input files in storage (empty: a job without inputs)."""
    info: dict[str, Any]
    """What `pc[...]` answers: uuid, name, process, queue, time_limit, attempt,
    blender_executable, basisu_executable."""
    storage: Storage
    store: Any
    """The JobStore actor handle the runner's progress reports go to."""
    scratch_dir: str
    """Where the runner makes its scratch folder; empty for the system default."""
    script_limits: ScriptLimits
    script_uid: int | None
    """The uid a `custom` script runs as (one per running job); None for other processes."""
    queue_options: dict[str, dict]
    """Ray task options of every runnable queue, for the job's child tasks."""

    @classmethod
    def for_attempt(
        cls,
        record: dict,
        *,
        process: ProcessSpec,
        settings: Settings,
        storage: Storage,
        store: Any,
        script_limits: ScriptLimits,
        script_uid: int | None,
        queue_options: dict[str, dict],
    ) -> RunSpec:
        """The spec of the attempt `record["attempt"]` of the job `record`."""
        return cls(
            job_id=record["uuid"],
            attempt=record["attempt"],
            process=process,
            entrypoint=record["config"].get("entrypoint") or "main",
            params=record["params"],
            inputs=record["inputs"],
            info={
                "uuid": record["uuid"],
                "name": record["name"],
                "process": record["process"],
                "queue": record["queue"],
                "time_limit": record["time_limit"],
                "attempt": record["attempt"],
                "blender_executable": settings.blender_executable,
                "basisu_executable": settings.basisu,
            },
            storage=storage,
            store=store,
            scratch_dir=settings.scratch_dir,
            script_limits=script_limits,
            script_uid=script_uid,
            queue_options=queue_options,
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (not copied: `script_limits` stays a `ScriptLimits`)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}
