"""JobStore: the detached, named actor that owns every job and its lifecycle.

It holds each job's record, checkpoints every change to storage before
answering (per-job `state.json`, written atomically, plus a compact
`state/index.json`), launches each job's runner task with its queue's Ray
resources, and watches it: time limit, cancellation, retry after a worker or
node died, final status, completion callback, metrics.

Restart safety: the actor is created with `max_restarts=-1`. On (re)start it
reloads the index and the state of unfinished jobs; those whose runner died
with it (Ray ends tasks whose owner died) are run again and say so in their
steps. Finished jobs come back exactly as they were.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from datetime import UTC, datetime

import ray
from ray import exceptions as ray_errors
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from tasks import callbacks, records
from tasks.archive_builder import build_archive
from tasks.checkpoints import JobCheckpoints
from tasks.metrics import ServiceMetrics
from tasks.processes import CUSTOM, discover
from tasks.queues import QueueChoice, choose_queues, escalate
from tasks.refusals import Draining, TooManyJobs
from tasks.runner import run_job
from tasks.scratch import sweep_after
from tasks.script_sandbox import ScriptLimits, ScriptUids
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
run_job_task = ray.remote(run_job)


def get_or_create_store(settings: Settings):
    """The cluster's JobStore handle, creating the actor (on the head node) if needed."""
    return JobStore.options(
        name=settings.store_name,
        namespace=settings.namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        num_cpus=0,
        resources={"node:__internal_head__": 0.001},
    ).remote(settings.model_dump(mode="json"))


@ray.remote
class JobStore:
    """Every job record, checkpointed; the jobs' runner tasks and their supervision."""

    def __init__(self, settings: dict):
        self.settings = Settings.model_validate(settings)
        self.storage = Storage(self.settings.storage, self.settings.storage_options)
        self.processes = discover(self.settings.process_path, self.settings.allow_scripts)
        self.metrics = ServiceMetrics()
        self.checkpoints = JobCheckpoints(self.storage)
        self.jobs = self.checkpoints.jobs  # uuid -> full record (the same dict)
        self._refs: dict[str, ray.ObjectRef] = {}
        self._deadlines: dict[str, float] = {}
        self._workers: dict[str, tuple[str, int]] = {}  # job -> (node id, pid) of its runner
        self._slots: dict[str, str] = {}  # running job -> the queue whose slot it holds
        self._waiting: dict[str, deque[str]] = {}  # queue -> jobs waiting for a slot
        self._draining = False
        self._report_order: dict[tuple[str, int], list] = {}  # (job, attempt) -> [next seq, early]
        self._archiving: set[str] = set()  # jobs whose archive this incarnation is building
        self._script_uids = ScriptUids()  # the uid of each running custom script
        self._unfinished_by_owner: Counter[str | None] = Counter()
        self._started = False
        self._to_resume = self.checkpoints.load()

    # -- start-up ---------------------------------------------------------------------

    def _ensure_started(self) -> None:
        """Work that needs the event loop: the index flusher and resuming unfinished jobs."""
        if self._started:
            return
        self._started = True
        asyncio.create_task(self.checkpoints.flush_forever())
        for job_id in self._to_resume:
            asyncio.create_task(self._resume(job_id))
        for entry in self.checkpoints.index.values():
            if entry["status"] not in records.TERMINAL:
                self.metrics.jobs_in_progress.labels(entry["process"]).inc()
                self._unfinished_by_owner[entry.get("owner")] += 1
        if self.settings.retention_days > 0:
            asyncio.create_task(self._sweep_forever())
        if self.storage.can_presign():
            asyncio.create_task(self._expire_uploads_forever())

    async def _resume(self, job_id: str) -> None:
        record = self.jobs[job_id]
        if record["status"] in (records.RECEIVED, records.STARTED, records.RUNNING):
            record["retry"] += 1
            self.metrics.job_retries.labels(record["process"]).inc()
            self._step(record, "The service restarted while this job ran; running it again", 0.0)
        await self._launch(job_id)

    async def ready(self) -> int:
        """Wait until the store is up; returns how many jobs it knows."""
        self._ensure_started()
        return len(self.checkpoints.index)

    # -- the API's calls --------------------------------------------------------------

    async def create(self, record: dict, limit_applies: bool = True) -> dict:
        """Accept a new job (inputs already in storage): persist, index, launch."""
        self._ensure_started()
        if self._draining:
            raise Draining("the service is shutting down; submit the job again once it is back")
        owner, cap = record.get("owner"), self.settings.jobs_in_progress_per_key
        if cap and owner is not None and limit_applies and self._unfinished_by_owner[owner] >= cap:
            raise TooManyJobs(
                f"this key already has {cap} unfinished jobs (the limit); wait for some to finish"
            )
        job_id = record["uuid"]
        self.checkpoints.add(record)
        try:  # a job exists once its state file and its index entry are on disk, or not at all
            await self.checkpoints.persist(job_id)
            await self.checkpoints.write_index()
        except OSError as exc:
            await self.checkpoints.discard(job_id)
            raise self.storage.failure(exc, "saving the new job") from None
        self._unfinished_by_owner[owner] += 1
        self.metrics.jobs_submitted.labels(record["process"]).inc()
        self.metrics.jobs_in_progress.labels(record["process"]).inc()
        short = records.short_state(record)
        await self._launch(job_id)
        return short

    async def get(self, job_id: str) -> dict | None:
        self._ensure_started()
        entry = self.checkpoints.index.get(job_id)
        if entry is None:
            return None
        return {**{k: entry[k] for k in records.SHORT_FIELDS}, "owner": entry.get("owner")}

    async def details(self, job_id: str) -> dict | None:
        self._ensure_started()
        record = await self.checkpoints.full_record(job_id)
        return None if record is None else records.details(record)

    async def task_meta(self, job_id: str) -> dict | None:
        self._ensure_started()
        record = await self.checkpoints.full_record(job_id)
        return None if record is None else records.task_meta(record)

    async def outputs(self, job_id: str) -> list[str] | None:
        self._ensure_started()
        record = await self.checkpoints.full_record(job_id)
        return None if record is None else list(record["outputs"])

    async def list_json(self, owner: str | None = None) -> bytes:
        """`{"jobs": [short state, ...]}` as JSON bytes, from memory; only `owner`'s jobs if given."""
        self._ensure_started()
        return self.checkpoints.list_json(owner)

    async def cancel(self, job_id: str) -> dict | None:
        """Revoke a job: its task (and sub-tasks) are killed. Finished jobs are left as they are."""
        self._ensure_started()
        record = await self.checkpoints.full_record(job_id)
        if record is None:
            return None
        if record["status"] not in records.TERMINAL:
            ref = self._refs.get(job_id)
            if ref is not None:
                self._kill(job_id, ref)
            await self._finish(
                job_id, records.REVOKED, error="job cancelled at the client's request"
            )
        return records.short_state(record)

    async def archive(self, job_id: str) -> str | None:
        """State of the outputs archive: `not_finished`, `building` or `ready` (starting a build if needed)."""
        self._ensure_started()
        record = await self.checkpoints.full_record(job_id)
        if record is None:
            return None
        if record["status"] not in records.TERMINAL:
            return "not_finished"
        if record["archive"] == "ready" or job_id in self._archiving:
            return record["archive"]
        # Not built, or "building" left by a store that died mid-build: build it now.
        record["archive"] = "building"
        self._archiving.add(job_id)
        self.checkpoints.changed(job_id)
        asyncio.create_task(self._build_archive(job_id))
        return "building"

    async def _build_archive(self, job_id: str) -> None:
        record = self.jobs[job_id]
        try:
            size = await build_archive.remote(
                self.storage, job_id, record["outputs"], self.settings.scratch_dir or None
            )
            record["archive"] = "ready"
            logger.info("job %s: archive built (%d bytes)", job_id, size)
        except Exception:
            logger.exception("job %s: building the archive failed", job_id)
            record["archive"] = None  # the next request tries again
        self._archiving.discard(job_id)
        await self._save(job_id)

    # -- the runner's calls -------------------------------------------------------------

    async def report(self, job_id: str, attempt: int, seq: int, kind: str, payload: dict) -> bool:
        """A progress event from a job's runner, applied in the runner's order (`seq`).

        Calls to an async actor may run interleaved, so an event that arrives
        early waits in a buffer for the ones before it. Stale attempts and
        finished jobs are ignored.
        """
        self._ensure_started()
        record = self.jobs.get(job_id)
        if record is None or record["attempt"] != attempt or record["status"] in records.TERMINAL:
            return False
        key = (job_id, attempt)
        expected, early = self._report_order.setdefault(key, [0, {}])
        if seq != expected:
            early[seq] = (kind, payload)
            return True
        applied = self._apply_report(job_id, record, kind, payload)
        order = self._report_order[key]
        order[0] += 1
        while order[0] in early:
            self._apply_report(job_id, record, *early.pop(order[0]))
            order[0] += 1
        await self._save(job_id)
        return applied

    def _apply_report(self, job_id: str, record: dict, kind: str, payload: dict) -> bool:
        if kind == "status":
            status = payload["status"]
            record["status"] = status
            if status == records.RECEIVED:
                record["node"] = payload.get("node_id")
                if payload.get("pid"):
                    self._workers[job_id] = (payload["node_id"], payload["pid"])
                record["time_info"]["started"] = records.now_iso()
                self._deadlines[job_id] = time.monotonic() + record["time_limit"]
        elif kind == "step":
            self._step(record, payload["info"], payload["duration"])
            if payload.get("progress") is not None:
                record["progress"] = payload["progress"]
            if record["status"] in (records.RECEIVED, records.STARTED):
                record["status"] = records.RUNNING
        elif kind == "progress":
            record["progress"] = payload["progress"]
        elif kind == "child":
            record["children"].append({"id": payload["id"], "info": payload.get("info", "")})
        elif kind == "child_done":
            for child in record["children"]:
                if child["id"] == payload["id"]:
                    child.update(node=payload.get("node"), seconds=payload.get("seconds"))
        else:
            logger.warning("job %s: unknown report kind %r", job_id, kind)
            return False
        return True

    async def _save(self, job_id: str) -> None:
        """Record a change and write it; a write storage refuses is retried in the background."""
        self.checkpoints.changed(job_id)
        await self.checkpoints.save(job_id)

    def _step(self, record: dict, info: str, duration: float) -> None:
        record["steps"].append({"duration": round(float(duration), 6), "info": info})
        self.metrics.step_duration.labels(record["process"]).observe(duration)

    # -- running jobs -----------------------------------------------------------------

    def _queue_choices(self) -> dict[str, QueueChoice]:
        s = self.settings
        return choose_queues(
            s.queue_resources, ray.cluster_resources(), s.allow_cpu_fallback, s.scalable_resources
        )

    def _take_slot(self, job_id: str, queue: str) -> bool:
        """Reserve a running slot on `queue` (False when its concurrency cap is reached)."""
        if job_id in self._slots:
            return True
        cap = self.settings.max_concurrent_jobs.get(queue, 0)
        if cap and sum(1 for q in self._slots.values() if q == queue) >= cap:
            return False
        self._slots[job_id] = queue
        return True

    def _release_slot(self, job_id: str) -> None:
        queue = self._slots.pop(job_id, None)
        waiting = self._waiting.get(queue)
        while waiting and not self._draining:
            next_id = waiting.popleft()
            record = self.jobs.get(next_id)
            if record is not None and record["status"] not in records.TERMINAL:
                asyncio.create_task(self._launch(next_id))
                return

    async def _launch(self, job_id: str) -> None:
        record = self.jobs[job_id]
        if record["process"] not in self.processes:
            error = f"process '{record['process']}' is no longer available on this server"
            await self._finish(job_id, records.FAILURE, error=error)
            return
        choices = self._queue_choices()
        choice = choices.get(record["queue"]) or choices["cpu"]
        if not choice.runnable:
            await self._finish(job_id, records.FAILURE, error=choice.note)
            return
        if choice.note and not any(s["info"] == choice.note for s in record["steps"]):
            self._step(record, choice.note, 0.0)
        record["status"] = records.PENDING if record["retry"] == 0 else records.RETRY
        if self._draining or not self._take_slot(job_id, record["queue"]):
            self._waiting.setdefault(record["queue"], deque()).append(job_id)
            await self._save(job_id)
            return
        record["attempt"] += 1
        spec = {
            "job_id": job_id,
            "attempt": record["attempt"],
            "process": vars(self.processes[record["process"]]),
            "entrypoint": record["config"].get("entrypoint") or "main",
            "params": record["params"],
            "inputs": record["inputs"],
            "info": {
                "uuid": job_id,
                "name": record["name"],
                "process": record["process"],
                "queue": record["queue"],
                "time_limit": record["time_limit"],
                "attempt": record["attempt"],
                "blender_executable": self.settings.blender_executable,
            },
            "storage": self.storage,
            "store": ray.get_runtime_context().current_actor,
            "scratch_dir": self.settings.scratch_dir,
            "script_limits": ScriptLimits.from_settings(self.settings),
            "script_uid": self._script_uids.take(job_id) if record["process"] == CUSTOM else None,
            "queue_options": {name: c.options for name, c in choices.items() if c.runnable},
        }
        ref = run_job_task.options(max_retries=0, name=f"job:{job_id}", **choice.options).remote(
            spec
        )
        self._refs[job_id] = ref
        await self._save(job_id)
        asyncio.create_task(self._supervise(job_id, record["attempt"], ref))

    async def _supervise(self, job_id: str, attempt: int, ref: ray.ObjectRef) -> None:
        record = self.jobs[job_id]
        future = asyncio.wrap_future(ref.future())
        while True:
            deadline = self._deadlines.get(job_id)
            wait = 1.0 if deadline is None else max(0.01, min(1.0, deadline - time.monotonic()))
            done, _ = await asyncio.wait({future}, timeout=wait)
            if record["attempt"] != attempt or record["status"] in records.TERMINAL:
                return  # cancelled, timed out or superseded meanwhile
            if done:
                break
            if deadline is not None and time.monotonic() >= deadline:
                self._kill(job_id, ref)
                await self._timed_out(job_id)
                return
        try:
            outcome = future.result()
        except CRASHES as exc:
            await self._crashed(job_id, exc)
            return
        except ray_errors.RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            await self._finish(
                job_id,
                records.FAILURE,
                error=f"the job's runner failed: {records.one_line(cause)}",
                tb=str(exc),
            )
            return
        except Exception as exc:  # e.g. TaskCancelledError from an outside cancel
            await self._finish(job_id, records.FAILURE, error=f"{type(exc).__name__}: {exc}")
            return
        record["outputs"] = outcome.get("outputs", [])
        await self._finish(
            job_id,
            outcome["status"],
            result=outcome.get("result"),
            error=outcome.get("error"),
            tb=outcome.get("traceback"),
        )

    def _kill(self, job_id: str, ref: ray.ObjectRef) -> None:
        """Kill a job's runner (and its child tasks); its scratch folder is swept after."""
        ray.cancel(ref, force=True, recursive=True)
        self._sweep_scratch(job_id)

    def _sweep_scratch(self, job_id: str) -> None:
        """A runner that was killed could not remove its scratch folder: do it on its node."""
        worker = self._workers.pop(job_id, None)
        if worker is None:
            return
        node_id, pid = worker
        sweep_after.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True)
        ).remote(self.settings.scratch_dir or None, pid)

    async def _timed_out(self, job_id: str) -> None:
        """FAILURE, or once, when the job or the operator asks for it, a retry on a bigger queue."""
        record, s = self.jobs[job_id], self.settings
        limit = record["time_limit"]
        exceeded = f"time limit of {limit:g} s exceeded (config.time_limit)"
        self._deadlines.pop(job_id, None)
        wanted = record["config"].get("retry_on_timeout")
        if (s.retry_timed_out_jobs if wanted is None else wanted) and not record.get(
            "timeout_retried"
        ):
            record["timeout_retried"] = True
            record["retry"] += 1
            self.metrics.job_retries.labels(record["process"]).inc()
            queue = s.timeout_retry_queue
            new_limit = s.timeout_retry_time_limit or limit
            self._step(
                record,
                f"The {exceeded}; retrying once on queue '{queue}' with {new_limit:g} s",
                0.0,
            )
            self._release_slot(job_id)
            record["queue"], record["time_limit"] = queue, new_limit
            await self._launch(job_id)
            return
        await self._finish(job_id, records.FAILURE, error=exceeded)

    async def _crashed(self, job_id: str, exc: Exception) -> None:
        record = self.jobs[job_id]
        self._sweep_scratch(job_id)
        first_sentence = str(exc).split(". ")[0].splitlines()[0][:200] if str(exc) else ""
        reason = f"{type(exc).__name__}: {first_sentence}".rstrip(": ")
        self._deadlines.pop(job_id, None)
        if record["retry"] < self.settings.max_retries:
            record["retry"] += 1
            self.metrics.job_retries.labels(record["process"]).inc()
            queue = escalate(record["queue"], self._queue_choices())
            where = f" on queue '{queue}'" if queue != record["queue"] else ""
            self._step(record, f"The worker running this job died ({reason}); retrying{where}", 0.0)
            self._release_slot(job_id)
            record["queue"] = queue
            await self._launch(job_id)
            return
        await self._finish(
            job_id,
            records.FAILURE,
            error=f"the worker running this job died and no retries are left: {reason}",
        )

    async def _finish(self, job_id: str, status: str, result=None, error=None, tb=None) -> None:
        record = self.jobs[job_id]
        record["status"] = status
        record["result"] = result
        record["error"] = None if error is None else records.one_line(error)
        record["traceback"] = None if tb is None else records.plain_traceback(tb)
        if status == records.SUCCESS:
            record["progress"] = 100
        record["time_info"]["stopped"] = records.now_iso()
        self._refs.pop(job_id, None)
        self._deadlines.pop(job_id, None)
        self._workers.pop(job_id, None)
        self._script_uids.release(job_id)
        self._report_order.pop((job_id, record["attempt"]), None)
        self._release_slot(job_id)
        await self._save(job_id)
        self._count_finished(record)
        callback_url = record["config"].get("callback_url")
        if callback_url:
            asyncio.create_task(self._callback(job_id, callback_url))

    def _count_finished(self, record: dict) -> None:
        self._unfinished_by_owner[record.get("owner")] -= 1
        process, status = record["process"], record["status"]
        self.metrics.jobs_finished.labels(process, status).inc()
        self.metrics.jobs_in_progress.labels(process).dec()
        started, stopped = record["time_info"]["started"], record["time_info"]["stopped"]
        if started and stopped:
            seconds = (
                datetime.fromisoformat(stopped) - datetime.fromisoformat(started)
            ).total_seconds()
            self.metrics.job_duration.labels(process, status).observe(seconds)

    async def _callback(self, job_id: str, url: str) -> None:
        record = self.jobs[job_id]
        outcome = await callbacks.deliver(
            url,
            records.details(record),
            secret=self.settings.callback_secret,
            attempts=self.settings.callback_attempts,
            allowed_networks=self.settings.callback_allowed_networks,
        )
        record["callback"] = outcome
        await self._save(job_id)

    # -- shutdown and retention ------------------------------------------------------

    async def drain(self, timeout: float) -> int:
        """Take no new jobs, start no waiting ones, and wait up to `timeout` s for running jobs.

        Returns how many are still running; they (and waiting jobs) resume on the next start.
        """
        self._draining = True
        deadline = time.monotonic() + timeout
        while self._refs and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        # What finished is on disk before the service stops, so it is never run again.
        await self.checkpoints.flush()
        return len(self._refs)

    async def sweep(self, requested_before: str | None = None) -> int:
        """Delete finished jobs requested before an ISO time (default: the retention age)."""
        if requested_before is None:
            cutoff = time.time() - self.settings.retention_days * 86400
            requested_before = datetime.fromtimestamp(cutoff, UTC).isoformat()
        old = [
            job_id
            for job_id, entry in self.checkpoints.index.items()
            if entry["status"] in records.TERMINAL and entry["request"] < requested_before
        ]
        for job_id in old:
            await self.checkpoints.forget(job_id)
        if old:
            await self.checkpoints.write_index()
            logger.info(
                "retention: deleted %d finished jobs requested before %s",
                len(old),
                requested_before,
            )
        return len(old)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retention_check_seconds)
            try:
                await self.sweep()
            except OSError:
                logger.exception("retention sweep failed; will retry")

    async def expire_uploads(self, older_than_hours: float | None = None) -> int:
        """Delete presigned uploads no job claimed within `upload_expiry_hours`; returns how many."""
        hours = self.settings.upload_expiry_hours if older_than_hours is None else older_than_hours
        old = await asyncio.to_thread(self.storage.uploads_older_than, hours * 3600)
        for path in old:
            await asyncio.to_thread(self.storage.delete, path)
        if old:
            logger.info("deleted %d unclaimed uploads older than %g h", len(old), hours)
        return len(old)

    async def _expire_uploads_forever(self) -> None:
        while True:
            try:
                await self.expire_uploads()
            except OSError:
                logger.exception("expiring unclaimed uploads failed; will retry")
            await asyncio.sleep(self.settings.retention_check_seconds)

    # -- metrics ----------------------------------------------------------------------

    async def record_http(self, batch: list) -> None:
        self.metrics.record_http(batch)

    async def metrics_text(self) -> bytes:
        self._ensure_started()
        return self.metrics.text()
