"""Prometheus metrics for the whole service, kept in one place (the JobStore actor).

API replicas batch their request observations and send them here, and job
events are recorded where they happen (in the store), so `/metrics` shows the
same numbers whichever replica answers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_JOB_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class ServiceMetrics:
    """Counters and histograms for HTTP requests, jobs and steps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "pixyz_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "pixyz_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.jobs_submitted = Counter(
            "pixyz_jobs_submitted", "Jobs accepted", ["process"], registry=r
        )
        self.jobs_finished = Counter(
            "pixyz_jobs_finished",
            "Jobs that reached a final status",
            ["process", "status"],
            registry=r,
        )
        self.job_duration = Histogram(
            "pixyz_job_duration_seconds",
            "Job run time (start to stop)",
            ["process", "status"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.step_duration = Histogram(
            "pixyz_step_duration_seconds",
            "Duration of the steps jobs report",
            ["process"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.jobs_in_progress = Gauge(
            "pixyz_jobs_in_progress", "Jobs accepted and not yet finished", ["process"], registry=r
        )
        self.job_retries = Counter(
            "pixyz_job_retries", "Jobs re-run after a crash", ["process"], registry=r
        )

    def record_http(self, batch: list[tuple[str, str, int, float]]) -> None:
        for method, route, status, seconds in batch:
            self.http_requests.labels(method, route, str(status)).inc()
            self.http_latency.labels(method, route).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
