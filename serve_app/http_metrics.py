"""Request counts and latencies, batched per replica and sent to the JobStore.

A pure ASGI middleware (no per-request task or body wrapping): it notes the
route template (`/jobs/{job_uuid}`, not the concrete path, to keep label
cardinality bounded), the status and the time to the response's start.
"""

from __future__ import annotations

import asyncio
import logging
import time

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class HttpMetrics:
    def __init__(self, store):
        self.store = store
        self.pending: list[tuple[str, str, int, float]] = []
        self._task: asyncio.Task | None = None

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.pending.append((method, route, status, seconds))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        if batch:
            await self.store.call("record_http", batch)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # metrics must never take the API down; the log says why
                logger.exception("could not send HTTP metrics to the JobStore")


class MetricsMiddleware:
    def __init__(self, app, metrics: HttpMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - started)
