"""JobEvents: what changed in each job (status, progress, steps), numbered, for `GET /jobs/{uuid}/events`.

The JobStore calls `observe` on every change of a record (`JobCheckpoints`'
listener): it compares the record with what was last said of the job and
appends one event per difference. Each job's events are numbered 1, 2, 3, ...
(its `id:` in the stream). Clients long-poll with `wait(job, since, timeout)`:
the call returns at once when there are newer events, else when one arrives or
the timeout passes; the actor is asyncio-based, so a waiting call costs no
thread, only a pending future.

A job whose events this incarnation of the store did not see (a finished job
after a restart, or one whose log was dropped) gets them from its record:
its steps, its progress, its status, in that order. Logs of finished jobs are
kept for the `FINISHED_LOGS` most recent ones; older ones are rebuilt so.

The store-wide `after_end` feed lists the jobs that changed or were deleted
after they had finished (a callback recorded, retention): the API replicas
follow it to drop those jobs from their caches of finished jobs.
"""

from __future__ import annotations

import asyncio
import uuid as uuid_lib
from collections import OrderedDict, deque

from tasks import records

FINISHED_LOGS = 1000
"""Finished jobs whose event logs stay in memory (the others are rebuilt from their record)."""

AFTER_END_KEPT = 10_000
"""Entries the after-end feed keeps; a follower further behind is told to start over."""


class _Log:
    __slots__ = ("events", "status", "progress", "steps", "changed")

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.status: str | None = None
        self.progress: int | None = None
        self.steps = 0
        self.changed = asyncio.Event()


class JobEvents:
    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self.epoch = uuid_lib.uuid4().hex  # a new store incarnation numbers its feed anew
        self._after_end: deque[tuple[int, str]] = deque(maxlen=AFTER_END_KEPT)
        self._after_end_seq = 0
        self._after_end_changed = asyncio.Event()

    # -- what the store's records say -------------------------------------------------

    def observe(self, job_id: str, record: dict) -> None:
        """The record changed: append an event for each of its status, progress and new steps."""
        log = self._logs.get(job_id)
        if log is None:
            log = self._logs[job_id] = _Log()
        elif log.status in records.TERMINAL:
            self._note_after_end(job_id)
        before = len(log.events)
        steps = record.get("steps") or []
        for index in range(log.steps, len(steps)):
            step = steps[index]
            self._add(log, "step", {"index": index, **step})
        log.steps = len(steps)
        if record.get("progress") != log.progress:
            log.progress = record.get("progress")
            self._add(log, "progress", {"progress": log.progress})
        if record["status"] != log.status:
            log.status = record["status"]
            self._add(log, "status", {"status": log.status, "error": record.get("error")})
            if log.status in records.TERMINAL:
                self._keep_finished(job_id)
        if len(log.events) > before:
            log.changed.set()
            log.changed = asyncio.Event()

    def forget(self, job_id: str) -> None:
        """The job was deleted (retention, or a refused creation)."""
        log = self._logs.pop(job_id, None)
        self._finished.pop(job_id, None)
        if log is not None:
            log.changed.set()  # waiters re-read and find the job gone
        self._note_after_end(job_id)

    # -- what clients read --------------------------------------------------------------

    async def wait(self, job_id: str, record: dict, since: int, timeout: float) -> list[dict]:
        """Events of the job numbered above `since`, waiting up to `timeout` s for one."""
        log = self._logs.get(job_id)
        if log is None:
            self.observe(job_id, record)  # rebuilt from the record
            log = self._logs[job_id]
        if len(log.events) <= since and log.status not in records.TERMINAL:
            try:
                await asyncio.wait_for(log.changed.wait(), timeout)
            except TimeoutError:
                pass
            log = self._logs.get(job_id, log)
        return log.events[since:]

    async def after_end(self, epoch: str | None, since: int, timeout: float) -> dict:
        """`{"epoch", "seq", "jobs", "reset"}`: the jobs changed or deleted after their end
        since entry `since` of feed `epoch` (all of this feed's when `epoch` is another
        store's), waiting up to `timeout` s for one; `reset` when some were missed."""
        if epoch != self.epoch:
            since = 0
        if since >= self._after_end_seq:
            try:
                await asyncio.wait_for(self._after_end_changed.wait(), timeout)
            except TimeoutError:
                pass
        oldest = self._after_end[0][0] if self._after_end else self._after_end_seq + 1
        return {
            "epoch": self.epoch,
            "seq": self._after_end_seq,
            "jobs": [job for seq, job in self._after_end if seq > since],
            "reset": since + 1 < oldest <= self._after_end_seq,
        }

    # -- internals --------------------------------------------------------------------

    def _add(self, log: _Log, kind: str, data: dict) -> None:
        log.events.append({"id": len(log.events) + 1, "event": kind, "data": data})

    def _keep_finished(self, job_id: str) -> None:
        self._finished[job_id] = None
        self._finished.move_to_end(job_id)
        while len(self._finished) > FINISHED_LOGS:
            old, _ = self._finished.popitem(last=False)
            self._logs.pop(old, None)

    def _note_after_end(self, job_id: str) -> None:
        self._after_end_seq += 1
        self._after_end.append((self._after_end_seq, job_id))
        self._after_end_changed.set()
        self._after_end_changed = asyncio.Event()
