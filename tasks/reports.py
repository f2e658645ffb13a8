"""ProgressReports: a job's runner events (status, steps, progress, children), applied in order.

The runner numbers its events per attempt (`tasks/runner.py`, `Reporter`) and
sends them without waiting. Calls to an async actor may run interleaved, so an
event that arrives early waits in a buffer for the ones before it. Events of a
stale attempt (the job was re-run since) or of a finished job are ignored.
The runner's first event (`RECEIVED`, with its node and pid) starts the job's
clock: it goes to `on_received`, the Supervisor's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from tasks import records
from tasks.checkpoints import JobCheckpoints
from tasks.job_metrics import JobMetrics

logger = logging.getLogger(__name__)

# (job id, node id, pid or None): the runner of the job's current attempt has started.
OnReceived = Callable[[str, str | None, int | None], None]


class ProgressReports:
    """Per (job, attempt): the next sequence number expected, and the events that came early."""

    def __init__(
        self,
        jobs: Mapping[str, dict],
        checkpoints: JobCheckpoints,
        metrics: JobMetrics,
        on_received: OnReceived,
    ):
        self.jobs = jobs
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.on_received = on_received
        self._order: dict[tuple[str, int], list] = {}  # (job, attempt) -> [next seq, early]

    async def report(self, job_id: str, attempt: int, seq: int, kind: str, payload: dict) -> bool:
        """Apply the event `seq` of the attempt, and the early ones it unblocks; then save.

        True when the event was taken (applied, or kept until its turn); False
        for a stale attempt, a finished or unknown job, or an unknown kind.
        """
        record = self.jobs.get(job_id)
        if record is None or record["attempt"] != attempt or record["status"] in records.TERMINAL:
            return False
        key = (job_id, attempt)
        expected, early = self._order.setdefault(key, [0, {}])
        if seq != expected:
            early[seq] = (kind, payload)
            return True
        applied = self._apply(job_id, record, kind, payload)
        order = self._order[key]
        order[0] += 1
        while order[0] in early:
            self._apply(job_id, record, *early.pop(order[0]))
            order[0] += 1
        await self.checkpoints.save_change(job_id)
        return applied

    def forget(self, job_id: str, attempt: int) -> None:
        """The attempt is over: drop its buffer."""
        self._order.pop((job_id, attempt), None)

    def _apply(self, job_id: str, record: dict, kind: str, payload: dict) -> bool:
        if kind == "status":
            status = payload["status"]
            record["status"] = status
            if status == records.RECEIVED:
                record["node"] = payload.get("node_id")
                record["time_info"]["started"] = records.now_iso()
                self.on_received(job_id, payload.get("node_id"), payload.get("pid"))
        elif kind == "step":
            self.metrics.step(record, payload["info"], payload["duration"])
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
