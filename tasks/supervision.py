"""Supervisor: starts each attempt of a job, watches it, and ends the job.

An attempt starts when the Scheduler gives the job a slot: the Supervisor
builds its `RunSpec` and launches the runner task through a `JobLauncher` (Ray,
in the JobStore: `tasks/ray_cluster.py`). It then watches the task: the job's
time limit (counted from the runner's `RECEIVED` report), cancellation, the
outcome. A runner that died with its worker or node (`CRASHES`) is run again,
up to `max_retries`, on `retry_queue` when that queue has nodes; a job over its
time limit is run once more on `retry_queue` when the job or the operator asks
(`_timed_out`), else it fails. A killed runner cannot clean up, so its scratch
folder is swept on its node. Ending a job frees its slot (the next waiting job
starts), its script uid and its report buffer, then counts it and sends its
callback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from ray import exceptions as ray_errors

from tasks import records
from tasks.checkpoints import JobCheckpoints
from tasks.deliveries import Deliveries
from tasks.job_metrics import JobMetrics
from tasks.processes import CUSTOM, ProcessSpec
from tasks.queues import escalate
from tasks.reports import ProgressReports
from tasks.run_spec import RunSpec
from tasks.sandbox.scripts import ScriptLimits, ScriptUids
from tasks.scheduling import Scheduler
from tasks.settings import Settings
from tasks.storage import Storage

logger = logging.getLogger(__name__)

# Failures of the machinery, not of the job: the job is run again (up to max_retries).
CRASHES = (
    ray_errors.WorkerCrashedError,
    ray_errors.NodeDiedError,
    ray_errors.OutOfMemoryError,
    ray_errors.ObjectLostError,
    ray_errors.LocalRayletDiedError,
)


class JobLauncher(Protocol):
    """What the Supervisor needs of the cluster (`tasks.ray_cluster.RayCluster`)."""

    def store(self) -> Any:
        """The handle runners send their reports to."""

    def launch(self, spec: RunSpec, options: dict) -> Any:
        """Start the runner task of `spec` with these task options; returns its handle."""

    def outcome(self, handle: Any) -> Awaitable[dict]:
        """The runner's return value, or the error that ended it."""

    def cancel(self, handle: Any) -> None:
        """Kill the runner and its child tasks."""

    def sweep_scratch(self, node_id: str, pid: int, root: str | None) -> None:
        """Remove the scratch folder of the killed runner `pid` on its node."""


class Supervisor:
    """The running attempts: their handles, deadlines, workers and script uids."""

    def __init__(
        self,
        *,
        settings: Settings,
        storage: Storage,
        processes: Mapping[str, ProcessSpec],
        checkpoints: JobCheckpoints,
        scheduler: Scheduler,
        metrics: JobMetrics,
        deliveries: Deliveries,
        launcher: JobLauncher,
    ):
        self.settings = settings
        self.storage = storage
        self.processes = processes
        self.checkpoints = checkpoints
        self.jobs = checkpoints.jobs  # uuid -> full record (the same dict)
        self.scheduler = scheduler
        self.metrics = metrics
        self.deliveries = deliveries
        self.launcher = launcher
        self.reports = ProgressReports(self.jobs, checkpoints, metrics, self._runner_started)
        self._running: dict[str, Any] = {}  # job -> the handle of its runner task
        self._deadlines: dict[str, float] = {}  # job -> monotonic time its limit is reached
        self._workers: dict[str, tuple[str, int]] = {}  # job -> (node id, pid) of its runner
        self._script_uids = ScriptUids()  # the uid of each running custom script

    @property
    def running(self) -> int:
        """How many jobs have a runner task."""
        return len(self._running)

    # -- starting ---------------------------------------------------------------------

    async def resume(self, job_id: str) -> None:
        """After a restart: run an unfinished job again (it says so if its runner had started)."""
        record = self.jobs[job_id]
        if record["status"] in (records.RECEIVED, records.STARTED, records.RUNNING):
            record["retry"] += 1
            self.metrics.retried(record)
            self.metrics.step(
                record, "The service restarted while this job ran; running it again", 0.0
            )
        await self.launch(job_id)

    async def launch(self, job_id: str) -> None:
        """Start the job's next attempt, or leave it waiting for a slot, or fail it with why."""
        record = self.jobs[job_id]
        if record["process"] not in self.processes:
            error = f"process '{record['process']}' is no longer available on this server"
            await self.finish(job_id, records.FAILURE, error=error)
            return
        choice, choices = self.scheduler.queue_for(record)
        if not choice.runnable:
            await self.finish(job_id, records.FAILURE, error=choice.note)
            return
        if choice.note and not any(s["info"] == choice.note for s in record["steps"]):
            self.metrics.step(record, choice.note, 0.0)
        record["status"] = records.PENDING if record["retry"] == 0 else records.RETRY
        if not self.scheduler.start_or_wait(job_id, record["queue"]):
            await self.checkpoints.save_change(job_id)
            return
        record["attempt"] += 1
        spec = RunSpec.for_attempt(
            record,
            process=self.processes[record["process"]],
            settings=self.settings,
            storage=self.storage,
            store=self.launcher.store(),
            script_limits=ScriptLimits.from_settings(self.settings),
            script_uid=self._script_uids.take(job_id) if record["process"] == CUSTOM else None,
            queue_options={name: c.options for name, c in choices.items() if c.runnable},
        )
        handle = self.launcher.launch(spec, choice.options)
        self._running[job_id] = handle
        await self.checkpoints.save_change(job_id)
        asyncio.create_task(self._supervise(job_id, record["attempt"], handle))

    def _runner_started(self, job_id: str, node_id: str | None, pid: int | None) -> None:
        """The runner reported `RECEIVED`: its time limit counts from now."""
        if pid:
            self._workers[job_id] = (node_id, pid)
        self._deadlines[job_id] = time.monotonic() + self.jobs[job_id]["time_limit"]

    # -- watching ---------------------------------------------------------------------

    async def _supervise(self, job_id: str, attempt: int, handle: Any) -> None:
        record = self.jobs[job_id]
        future = self.launcher.outcome(handle)
        while True:
            deadline = self._deadlines.get(job_id)
            wait = 1.0 if deadline is None else max(0.01, min(1.0, deadline - time.monotonic()))
            done, _ = await asyncio.wait({future}, timeout=wait)
            if record["attempt"] != attempt or record["status"] in records.TERMINAL:
                return  # cancelled, timed out or superseded meanwhile
            if done:
                break
            if deadline is not None and time.monotonic() >= deadline:
                self._kill(job_id, handle)
                await self._timed_out(job_id)
                return
        try:
            outcome = future.result()
        except CRASHES as exc:
            await self._crashed(job_id, exc)
            return
        except ray_errors.RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            await self.finish(
                job_id,
                records.FAILURE,
                error=f"the job's runner failed: {records.one_line(cause)}",
                tb=str(exc),
            )
            return
        except Exception as exc:  # e.g. TaskCancelledError from an outside cancel
            await self.finish(job_id, records.FAILURE, error=f"{type(exc).__name__}: {exc}")
            return
        record["outputs"] = outcome.get("outputs", [])
        await self.finish(
            job_id,
            outcome["status"],
            result=outcome.get("result"),
            error=outcome.get("error"),
            tb=outcome.get("traceback"),
        )

    async def cancel(self, job_id: str) -> None:
        """Revoke an unfinished job: its runner (and its child tasks) are killed."""
        handle = self._running.get(job_id)
        if handle is not None:
            self._kill(job_id, handle)
        await self.finish(job_id, records.REVOKED, error="job cancelled at the client's request")

    def _kill(self, job_id: str, handle: Any) -> None:
        """Kill a job's runner (and its child tasks); its scratch folder is swept after."""
        self.launcher.cancel(handle)
        self._sweep_scratch(job_id)

    def _sweep_scratch(self, job_id: str) -> None:
        """A runner that was killed could not remove its scratch folder: do it on its node."""
        worker = self._workers.pop(job_id, None)
        if worker is None:
            return
        node_id, pid = worker
        self.launcher.sweep_scratch(node_id, pid, self.settings.scratch_dir or None)

    # -- retries ----------------------------------------------------------------------

    async def _timed_out(self, job_id: str) -> None:
        """FAILURE, or once, when the job or the operator asks for it, a retry on a bigger queue."""
        record, s = self.jobs[job_id], self.settings
        limit = record["time_limit"]
        exceeded = f"time limit of {limit:g} s exceeded (config.time_limit)"
        self._deadlines.pop(job_id, None)
        wanted = record["config"].get("retry_on_timeout")
        if (
            (s.retry_timed_out_jobs if wanted is None else wanted)
            and s.retry_queue
            and not record.get("timeout_retried")
        ):
            record["timeout_retried"] = True
            record["retry"] += 1
            self.metrics.retried(record)
            queue = s.retry_queue
            new_limit = s.timeout_retry_time_limit or limit
            self.metrics.step(
                record,
                f"The {exceeded}; retrying once on queue '{queue}' with {new_limit:g} s",
                0.0,
            )
            self._release_slot(job_id)
            record["queue"], record["time_limit"] = queue, new_limit
            await self.launch(job_id)
            return
        await self.finish(job_id, records.FAILURE, error=exceeded)

    async def _crashed(self, job_id: str, exc: Exception) -> None:
        """Run the job again (on `retry_queue` when it has nodes) while retries are left."""
        record = self.jobs[job_id]
        self._sweep_scratch(job_id)
        first_sentence = str(exc).split(". ")[0].splitlines()[0][:200] if str(exc) else ""
        reason = f"{type(exc).__name__}: {first_sentence}".rstrip(": ")
        self._deadlines.pop(job_id, None)
        if record["retry"] < self.settings.max_retries:
            record["retry"] += 1
            self.metrics.retried(record)
            queue = escalate(
                record["queue"], self.scheduler.queue_choices(), self.settings.retry_queue
            )
            where = f" on queue '{queue}'" if queue != record["queue"] else ""
            self.metrics.step(
                record, f"The worker running this job died ({reason}); retrying{where}", 0.0
            )
            self._release_slot(job_id)
            record["queue"] = queue
            await self.launch(job_id)
            return
        await self.finish(
            job_id,
            records.FAILURE,
            error=f"the worker running this job died and no retries are left: {reason}",
        )

    # -- ending -----------------------------------------------------------------------

    async def finish(
        self,
        job_id: str,
        status: str,
        result: dict | None = None,
        error: str | None = None,
        tb: str | None = None,
    ) -> None:
        """Give the job its final status and free what its attempt held."""
        record = self.jobs[job_id]
        record["status"] = status
        record["result"] = result
        record["error"] = None if error is None else records.one_line(error)
        record["traceback"] = None if tb is None else records.plain_traceback(tb)
        if status == records.SUCCESS:
            record["progress"] = 100
        record["time_info"]["stopped"] = records.now_iso()
        self._running.pop(job_id, None)
        self._deadlines.pop(job_id, None)
        self._workers.pop(job_id, None)
        self._script_uids.release(job_id)
        self.reports.forget(job_id, record["attempt"])
        self._release_slot(job_id)
        await self.checkpoints.save_change(job_id)
        self.scheduler.finished(record.get("owner"))
        self.metrics.finished(record)
        self.deliveries.send_callback(job_id)

    async def wait_for_running(self, timeout: float) -> None:
        """Wait up to `timeout` s for the running jobs to end."""
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    def _release_slot(self, job_id: str) -> None:
        """Free the job's slot and start the next job waiting for it, if any."""
        next_id = self.scheduler.release(job_id)
        if next_id is not None:
            asyncio.create_task(self.launch(next_id))
