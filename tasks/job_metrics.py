"""JobMetrics: job events counted into the service's Prometheus metrics (`tasks/metrics.py`).

Submissions, jobs in progress, retries, step durations and finished jobs with
their run time, each counted where the JobStore's classes see it happen.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from tasks import records
from tasks.metrics import ServiceMetrics


class JobMetrics:
    """What the JobStore's classes record about jobs, in `ServiceMetrics`."""

    def __init__(self, metrics: ServiceMetrics):
        self.metrics = metrics

    def count_unfinished(self, entries: Iterable[dict]) -> None:
        """After a reload: the unfinished jobs among index `entries` are in progress again."""
        for entry in entries:
            if entry["status"] not in records.TERMINAL:
                self.metrics.jobs_in_progress.labels(entry["process"]).inc()

    def submitted(self, record: dict) -> None:
        self.metrics.jobs_submitted.labels(record["process"]).inc()
        self.metrics.jobs_in_progress.labels(record["process"]).inc()

    def retried(self, record: dict) -> None:
        self.metrics.job_retries.labels(record["process"]).inc()

    def step(self, record: dict, info: str, duration: float) -> None:
        """Add a step to the job's record and its duration to the step histogram."""
        record["steps"].append({"duration": round(float(duration), 6), "info": info})
        self.metrics.step_duration.labels(record["process"]).observe(duration)

    def finished(self, record: dict) -> None:
        """The job reached its final status: counted by status, with its run time."""
        process, status = record["process"], record["status"]
        self.metrics.jobs_finished.labels(process, status).inc()
        self.metrics.jobs_in_progress.labels(process).dec()
        started, stopped = record["time_info"]["started"], record["time_info"]["stopped"]
        if started and stopped:
            seconds = (
                datetime.fromisoformat(stopped) - datetime.fromisoformat(started)
            ).total_seconds()
            self.metrics.job_duration.labels(process, status).observe(seconds)
