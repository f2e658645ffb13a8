"""Scheduler: which job may run now, on which queue, and who may submit more.

It decides, it does not run anything: the queue a job runs on (`tasks/queues.py`,
from the cluster's resources as it is now), a running slot per job within each
queue's `max_concurrent_jobs`, the jobs waiting for a slot (first come, first
served), the count of unfinished jobs per owner (`jobs_in_progress_per_key`, past
it `TooManyJobs`), and draining (no new jobs, no waiting job started). The
Supervisor starts what it allows.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping

from tasks import records
from tasks.queues import QueueChoice, choose_queues
from tasks.refusals import Draining, TooManyJobs
from tasks.settings import Settings


class Scheduler:
    """Queue choice, running slots and waiting lists per queue, per-owner limits, draining."""

    def __init__(
        self,
        settings: Settings,
        jobs: Mapping[str, dict],
        cluster_resources: Callable[[], dict[str, float]],
    ):
        self.settings = settings
        self.jobs = jobs  # uuid -> record (the checkpoints' dict): waiting jobs may have ended
        self._cluster_resources = cluster_resources
        self._slots: dict[str, str] = {}  # running job -> the queue whose slot it holds
        self._waiting: dict[str, deque[str]] = {}  # queue -> jobs waiting for a slot
        self._unfinished_by_owner: Counter[str | None] = Counter()
        self.draining = False

    # -- who may submit ---------------------------------------------------------------

    def admit(self, record: dict, limit_applies: bool = True) -> None:
        """Raise `Draining` or `TooManyJobs` when the new job `record` may not be accepted."""
        if self.draining:
            raise Draining("the service is shutting down; submit the job again once it is back")
        owner, cap = record.get("owner"), self.settings.jobs_in_progress_per_key
        if cap and owner is not None and limit_applies and self._unfinished_by_owner[owner] >= cap:
            raise TooManyJobs(
                f"this key already has {cap} unfinished jobs (the limit); wait for some to finish"
            )

    def accepted(self, owner: str | None) -> None:
        """A job of `owner` was accepted: it counts until `finished`."""
        self._unfinished_by_owner[owner] += 1

    def count_unfinished(self, entries: Iterable[dict]) -> None:
        """After a reload: count the unfinished jobs among index `entries` for their owners."""
        for entry in entries:
            if entry["status"] not in records.TERMINAL:
                self.accepted(entry.get("owner"))

    def finished(self, owner: str | None) -> None:
        self._unfinished_by_owner[owner] -= 1

    def unfinished(self, owner: str | None) -> int:
        return self._unfinished_by_owner[owner]

    # -- where and when jobs run ------------------------------------------------------

    def queue_choices(self) -> dict[str, QueueChoice]:
        """How each queue runs on the cluster as it is now."""
        s = self.settings
        return choose_queues(
            s.queue_resources, self._cluster_resources(), s.allow_cpu_fallback, s.scalable_resources
        )

    def queue_for(self, record: dict) -> tuple[QueueChoice, dict[str, QueueChoice]]:
        """How the job's queue runs now (an unknown queue runs as `cpu`), and every queue's choice."""
        choices = self.queue_choices()
        return choices.get(record["queue"]) or choices["cpu"], choices

    def start_or_wait(self, job_id: str, queue: str) -> bool:
        """True when the job holds a running slot on `queue` (already or now); else it joins
        the queue's waiting list, and `release` hands it a slot later."""
        if not self.draining and self._take_slot(job_id, queue):
            return True
        self._waiting.setdefault(queue, deque()).append(job_id)
        return False

    def _take_slot(self, job_id: str, queue: str) -> bool:
        """Reserve a running slot on `queue` (False when its concurrency cap is reached)."""
        if job_id in self._slots:
            return True
        cap = self.settings.max_concurrent_jobs.get(queue, 0)
        if cap and sum(1 for q in self._slots.values() if q == queue) >= cap:
            return False
        self._slots[job_id] = queue
        return True

    def release(self, job_id: str) -> str | None:
        """Free the job's slot; returns the waiting job to launch next on that queue, if any
        (none while draining). Waiting jobs that ended meanwhile (cancelled) are skipped."""
        queue = self._slots.pop(job_id, None)
        waiting = self._waiting.get(queue)
        while waiting and not self.draining:
            next_id = waiting.popleft()
            record = self.jobs.get(next_id)
            if record is not None and record["status"] not in records.TERMINAL:
                return next_id
        return None

    def running(self, queue: str) -> list[str]:
        """The jobs holding a slot on `queue`."""
        return [job_id for job_id, q in self._slots.items() if q == queue]

    def waiting(self, queue: str) -> list[str]:
        """The jobs waiting for a slot on `queue`, first to start first."""
        return list(self._waiting.get(queue, ()))
