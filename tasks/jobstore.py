"""JobStore: the detached, named actor that owns every job and its lifecycle.

It holds each job's record, checkpointed to storage before answering
(`tasks/checkpoints.py`: per-job `state.json`, written atomically, plus a
compact `state/index.json`), and answers the API's and the runners' calls. The
work is done by plain classes it owns, each testable without Ray (their Ray
calls go through `tasks/ray_cluster.py`):

- `Scheduler` (`tasks/scheduling.py`): queue choice, slots per queue, waiting
  lists, the per-owner limit, draining;
- `Supervisor` (`tasks/supervision.py`): launching each job's runner task,
  time limits, cancellation, retry after a worker or node died, final status;
  its `ProgressReports` (`tasks/reports.py`) apply the runner's events in order;
- `Deliveries` (`tasks/deliveries.py`): completion callbacks, outputs archives;
- `Retention` (`tasks/retention.py`): deleting old finished jobs and unclaimed uploads;
- `JobMetrics` (`tasks/job_metrics.py`): job events in the service's metrics.

Restart safety: the actor is created with `max_restarts=-1`. On (re)start it
reloads the index and the state of unfinished jobs; those whose runner died
with it (Ray ends tasks whose owner died) are run again and say so in their
steps. Finished jobs come back exactly as they were.
"""

from __future__ import annotations

import asyncio

import ray

from tasks import records
from tasks.checkpoints import JobCheckpoints
from tasks.deliveries import Deliveries
from tasks.job_events import JobEvents
from tasks.job_metrics import JobMetrics
from tasks.metrics import ServiceMetrics
from tasks.processes import discover
from tasks.ray_cluster import RayCluster
from tasks.retention import Retention
from tasks.scheduling import Scheduler
from tasks.settings import Settings
from tasks.storage import Storage
from tasks.supervision import Supervisor

STORE_CONCURRENCY = 20_000


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
        # Each open `GET /jobs/{uuid}/events` stream keeps one call waiting here (an idle
        # coroutine); Ray's default of 1,000 concurrent calls would let streams starve the rest.
        max_concurrency=STORE_CONCURRENCY,
    ).remote(settings.model_dump(mode="json"))


def _settled(record: dict) -> bool:
    """Finished, and its details will not change any more (a callback still to come would)."""
    if record["status"] not in records.TERMINAL:
        return False
    return not record["config"].get("callback_url") or record.get("callback") is not None


@ray.remote
class JobStore:
    """Every job record, checkpointed; the jobs' runner tasks and their supervision."""

    def __init__(self, settings: dict):
        self.settings = s = Settings.model_validate(settings)
        self.storage = Storage(s.storage, s.storage_options)
        self.metrics = ServiceMetrics()
        self.checkpoints = JobCheckpoints(self.storage)
        self.events = JobEvents()
        self.checkpoints.on_change = self.events.observe
        self.checkpoints.on_forget = self.events.forget
        cluster = RayCluster()
        self.job_metrics = JobMetrics(self.metrics)
        self.scheduler = Scheduler(s, self.checkpoints.jobs, cluster.resources)
        self.deliveries = Deliveries(s, self.storage, self.checkpoints, cluster.build_archive)
        self.retention = Retention(s, self.storage, self.checkpoints)
        self.supervisor = Supervisor(
            settings=s,
            storage=self.storage,
            processes=discover(s.process_path, s.allow_scripts),
            checkpoints=self.checkpoints,
            scheduler=self.scheduler,
            metrics=self.job_metrics,
            deliveries=self.deliveries,
            launcher=cluster,
        )
        self._started = False
        self._to_resume = self.checkpoints.load()

    def _ensure_started(self) -> None:
        """Work that needs the event loop: the index flusher and resuming unfinished jobs."""
        if self._started:
            return
        self._started = True
        asyncio.create_task(self.checkpoints.flush_forever())
        for job_id in self._to_resume:
            asyncio.create_task(self.supervisor.resume(job_id))
        self.job_metrics.count_unfinished(self.checkpoints.index.values())
        self.scheduler.count_unfinished(self.checkpoints.index.values())
        self.retention.start()

    async def ready(self) -> int:
        """Wait until the store is up; returns how many jobs it knows."""
        self._ensure_started()
        return len(self.checkpoints.index)

    # -- the API's calls --------------------------------------------------------------

    async def create(self, record: dict, limit_applies: bool = True) -> dict:
        """Accept a new job (inputs already in storage): persist, index, launch."""
        self._ensure_started()
        self.scheduler.admit(record, limit_applies)
        job_id = record["uuid"]
        self.checkpoints.add(record)
        try:  # a job exists once its state file and its index entry are on disk, or not at all
            await self.checkpoints.persist(job_id)
            await self.checkpoints.write_index()
        except OSError as exc:
            await self.checkpoints.discard(job_id)
            raise self.storage.failure(exc, "saving the new job") from None
        self.scheduler.accepted(record.get("owner"))
        self.job_metrics.submitted(record)
        short = records.short_state(record)
        await self.supervisor.launch(job_id)
        return short

    async def get(self, job_id: str) -> dict | None:
        self._ensure_started()
        entry = self.checkpoints.index.get(job_id)
        if entry is None:
            return None
        # `owner` and `saved` are for the replicas' cache of finished jobs (the API drops them)
        return {
            **{k: entry[k] for k in records.SHORT_FIELDS},
            "owner": entry.get("owner"),
            "saved": self.checkpoints.is_saved(job_id),
        }

    async def details(self, job_id: str) -> dict | None:
        self._ensure_started()
        record = await self.checkpoints.full_record(job_id)
        if record is None:
            return None
        # `owner`, `settled` and `saved` are for the replicas' cache of finished jobs (the API
        # drops them): a final state only in memory may be undone by a restart (it runs again)
        return records.details(record) | {
            "owner": record.get("owner"),
            "settled": _settled(record),
            "saved": self.checkpoints.is_saved(job_id),
        }

    async def events_since(self, job_id: str, since: int, timeout: float) -> dict | None:
        """Long poll for `GET /jobs/{uuid}/events`: `{"events": [...], "short": short state}`
        with the job's events numbered above `since`, waiting up to `timeout` s for one
        (no thread is held meanwhile: the actor is asyncio-based)."""
        self._ensure_started()
        record = await self.checkpoints.full_record(job_id)
        if record is None:
            return None
        events = await self.events.wait(job_id, record, since, timeout)
        if job_id not in self.checkpoints.index:
            return None  # deleted while the client waited
        return {"events": events, "short": records.short_state(record)}

    async def changed_after_end(self, epoch: str | None, since: int, timeout: float) -> dict:
        """Long poll of the jobs changed or deleted after they finished (`JobEvents.after_end`):
        what the API replicas drop from their caches of finished jobs."""
        self._ensure_started()
        return await self.events.after_end(epoch, since, timeout)

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
            await self.supervisor.cancel(job_id)
        return records.short_state(record)

    async def archive(self, job_id: str) -> str | None:
        """The outputs archive: `not_finished`, `building`, `ready` (starting a build if needed)
        or `failed: <why>`."""
        self._ensure_started()
        return await self.deliveries.archive(job_id)

    # -- the runner's calls -------------------------------------------------------------

    async def report(self, job_id: str, attempt: int, seq: int, kind: str, payload: dict) -> bool:
        """A progress event from a job's runner, applied in the runner's order (`seq`)."""
        self._ensure_started()
        return await self.supervisor.reports.report(job_id, attempt, seq, kind, payload)

    # -- shutdown and retention ------------------------------------------------------

    async def drain(self, timeout: float) -> int:
        """Take no new jobs, start no waiting ones, and wait up to `timeout` s for running jobs.

        Returns how many are still running; they (and waiting jobs) resume on the next start.
        """
        self.scheduler.draining = True
        await self.supervisor.wait_for_running(timeout)
        # What finished is on disk before the service stops, so it is never run again.
        await self.checkpoints.flush()
        return self.supervisor.running

    async def sweep(self, requested_before: str | None = None) -> int:
        """Delete finished jobs requested before an ISO time (default: the retention age)."""
        return await self.retention.sweep(requested_before)

    async def expire_uploads(self, older_than_hours: float | None = None) -> int:
        """Delete presigned uploads no job claimed within `upload_expiry_hours`; returns how many."""
        return await self.retention.expire_uploads(older_than_hours)

    # -- metrics ----------------------------------------------------------------------

    async def record_http(self, batch: list) -> None:
        self.metrics.record_http(batch)

    async def metrics_text(self) -> bytes:
        self._ensure_started()
        return self.metrics.text()
