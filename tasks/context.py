"""ProgramContext: what a process sees of its job (`main(pc, params)`).

The PiXYZ scheduler's processes were written against this interface, so it
keeps their names: `progress_set_total`, `progress_next`, `progress_stop`,
`get_input_file`, `get_input_dir`, `get_output_dir`, `pc["queue"]`.
Progress goes to a `report` callable (the JobStore in a Ray worker, a pipe in
a custom-script child process); the context itself holds no Ray code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Report = Callable[[str, dict], None]


class ProgramContext:
    """Inputs, outputs, progress and settings of one running job."""

    def __init__(
        self,
        *,
        job_id: str,
        input_dir: Path,
        input_file: Path | None,
        output_dir: Path,
        params: dict,
        info: dict[str, Any],
        report: Report,
        tasks: Any = None,
    ):
        self.job_id = job_id
        self.params = params
        self._input_dir = Path(input_dir)
        self._input_file = Path(input_file) if input_file else None
        self._output_dir = Path(output_dir)
        self._info = dict(info)
        self._report = report
        self._tasks = tasks
        self._total = 0
        self._done = 0
        self._mark = time.monotonic()

    # -- what the job is ----------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        """Job facts by name: `queue`, `uuid`, `name`, `process`, `time_limit`, `attempt`."""
        return self._info[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._info.get(key, default)

    # -- files --------------------------------------------------------------------

    def get_input_file(self) -> str:
        """The uploaded model (for an archive: its root file, from `params.filename` or detected)."""
        if self._input_file is None:
            raise FileNotFoundError("this job has no input file (send one in the `file` field)")
        return str(self._input_file)

    def get_input_dir(self) -> str:
        """The folder holding the input file and, for archives, everything unpacked beside it."""
        return str(self._input_dir)

    def get_output_dir(self, filename: str | None = None) -> str:
        """The folder whose files become the job's outputs, or the path of `filename` in it."""
        if filename is None:
            return str(self._output_dir)
        target = (self._output_dir / filename).resolve()
        if not target.is_relative_to(self._output_dir.resolve()):
            raise ValueError(f"output name escapes the output folder: {filename!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        return str(target)

    @property
    def tasks(self):
        """Child Ray tasks on the job's queues (`tasks.subtasks.SubTasks`): submit, gather, run."""
        if self._tasks is None:
            raise RuntimeError(
                "sub-tasks are available to built-in and operator processes, not to custom scripts"
            )
        return self._tasks

    # -- progress -------------------------------------------------------------------

    def progress_set_total(self, total: int) -> None:
        """Announce how many steps the process will report with `progress_next`."""
        self._total = max(0, int(total))
        self._done = 0
        self._report("progress", {"progress": 0 if self._total else None})

    def progress_next(self, info: str = "") -> None:
        """Record a finished step (its duration is the time since the previous one)."""
        now = time.monotonic()
        duration, self._mark = now - self._mark, now
        self._done += 1
        progress = None
        if self._total:
            progress = min(100, round(100 * self._done / self._total))
        self._report("step", {"info": str(info), "duration": duration, "progress": progress})

    def progress_stop(self) -> None:
        """Mark the work as complete (progress 100)."""
        self._report("progress", {"progress": 100})
