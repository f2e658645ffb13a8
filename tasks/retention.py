"""Retention: how long storage keeps what the service no longer needs.

Finished jobs (record, inputs, outputs) are deleted once they were requested
more than `retention_days` ago (never an unfinished one); presigned uploads no
job claimed are deleted after `upload_expiry_hours`. Each runs in the
background every `retention_check_seconds` when configured, and on demand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from tasks import records
from tasks.checkpoints import JobCheckpoints
from tasks.settings import Settings
from tasks.storage import Storage

logger = logging.getLogger(__name__)


class Retention:
    """The retention sweep of finished jobs and the expiry of unclaimed uploads."""

    def __init__(self, settings: Settings, storage: Storage, checkpoints: JobCheckpoints):
        self.settings = settings
        self.storage = storage
        self.checkpoints = checkpoints

    def start(self) -> None:
        """Start the background loops this service's settings and storage call for."""
        if self.settings.retention_days > 0:
            asyncio.create_task(self._sweep_forever())
        if self.storage.can_presign():
            asyncio.create_task(self._expire_uploads_forever())

    def old_finished_jobs(self, requested_before: str) -> list[str]:
        """The finished jobs requested before the ISO time `requested_before`."""
        return [
            job_id
            for job_id, entry in self.checkpoints.index.items()
            if entry["status"] in records.TERMINAL and entry["request"] < requested_before
        ]

    async def sweep(self, requested_before: str | None = None) -> int:
        """Delete finished jobs requested before an ISO time (default: the retention age)."""
        if requested_before is None:
            cutoff = time.time() - self.settings.retention_days * 86400
            requested_before = datetime.fromtimestamp(cutoff, UTC).isoformat()
        old = self.old_finished_jobs(requested_before)
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
