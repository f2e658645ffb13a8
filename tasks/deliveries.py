"""Deliveries: what a finished job hands out besides its status — its callback and its archive.

The completion callback POSTs the final details to `config.callback_url`
(`tasks/callbacks.py`: signed, retried, public addresses only) and records the
outcome in the job's `callback` detail. The outputs archive (`archive.zip`) is
built once, on first request, by `build_archive` (a Ray task, injected); a
build that a dead store left "building" is started again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tasks import callbacks, records
from tasks.checkpoints import JobCheckpoints
from tasks.settings import Settings
from tasks.storage import Storage

logger = logging.getLogger(__name__)

# (storage, job id, output names, scratch folder or None) -> the archive's size in bytes
BuildArchive = Callable[[Storage, str, list[str], str | None], Awaitable[int]]


class Deliveries:
    """Completion callbacks and outputs archives of finished jobs."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        checkpoints: JobCheckpoints,
        build_archive: BuildArchive,
    ):
        self.settings = settings
        self.storage = storage
        self.checkpoints = checkpoints
        self.jobs = checkpoints.jobs
        self._build = build_archive
        self._archiving: set[str] = set()  # jobs whose archive this incarnation is building

    # -- callbacks ------------------------------------------------------------------

    def send_callback(self, job_id: str) -> None:
        """In the background: POST the job's final details to its `config.callback_url`, if any."""
        url = self.jobs[job_id]["config"].get("callback_url")
        if url:
            asyncio.create_task(self._callback(job_id, url))

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
        await self.checkpoints.save_change(job_id)

    # -- archives -------------------------------------------------------------------

    async def archive(self, job_id: str) -> str | None:
        """`not_finished`, `building`, `ready` (starting a build if needed) or `failed: <why>`
        (said once; the next request builds again); None: no such job."""
        record = await self.checkpoints.full_record(job_id)
        if record is None:
            return None
        if record["status"] not in records.TERMINAL:
            return "not_finished"
        if record["archive"] == "ready" or job_id in self._archiving:
            return record["archive"]
        if record["archive"] == "failed":
            reason = record.get("archive_error") or "unknown reason"
            record["archive"], record["archive_error"] = None, None
            await self.checkpoints.save_change(job_id)
            return f"failed: {reason}"
        # Not built, or "building" left by a store that died mid-build: build it now.
        record["archive"] = "building"
        self._archiving.add(job_id)
        self.checkpoints.changed(job_id)
        asyncio.create_task(self._build_archive(job_id))
        return "building"

    async def _build_archive(self, job_id: str) -> None:
        record = self.jobs[job_id]
        try:
            size = await self._build(
                self.storage, job_id, record["outputs"], self.settings.scratch_dir or None
            )
            record["archive"] = "ready"
            logger.info("job %s: archive built (%d bytes)", job_id, size)
        except Exception as exc:  # the next request says why, the one after builds again
            logger.exception("job %s: building the archive failed", job_id)
            cause = getattr(exc, "cause", None) or exc  # a Ray task error wraps the cause
            record["archive"], record["archive_error"] = "failed", records.one_line(cause, 300)
        self._archiving.discard(job_id)
        await self.checkpoints.save_change(job_id)
