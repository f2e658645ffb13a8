"""The API's handle on the JobStore actor, re-attached if the actor was replaced.

The actor restarts by itself after a crash (calls made meanwhile are retried
by Ray); if it was killed for good, the next call creates it again from the
checkpoints in storage and retries once. Short states and details of finished
jobs are answered from this replica's `FinishedJobs` cache
(`serve_app/finished_jobs.py`) without a call to the store.
"""

from __future__ import annotations

import logging

from ray import exceptions as ray_errors

from serve_app.errors import ApiError
from serve_app.finished_jobs import AfterEndFeed, FinishedJobs
from tasks.jobstore import get_or_create_store
from tasks.records import TERMINAL
from tasks.refusals import Draining, TooManyJobs
from tasks.settings import Settings
from tasks.storage import StorageError

logger = logging.getLogger(__name__)


# Exceptions the JobStore raises as answers; the routes turn them into 4xx/5xx bodies.
ANSWERS = (Draining, TooManyJobs, StorageError)


class StoreClient:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.handle = get_or_create_store(settings)
        self.finished = FinishedJobs()
        self._feed: AfterEndFeed | None = None  # started with the first cached job

    async def call(self, method: str, *args):
        try:
            try:
                return await getattr(self.handle, method).remote(*args)
            except ray_errors.ActorDiedError:
                logger.warning("the JobStore actor is gone; creating it again from storage")
                self.handle = get_or_create_store(self.settings)
                return await getattr(self.handle, method).remote(*args)
        except ray_errors.RayTaskError as exc:
            if isinstance(exc.cause, ANSWERS):
                raise exc.cause from None  # the store's own answer, not a crash
            raise

    async def for_job(self, method: str, job_id, principal=None) -> object:
        """Call a per-job method; a job the store does not know, or that `principal`
        may not see (another key's job), is the client's 404. `get` and `details` of a
        finished job come from the cache when it has them."""
        job_id = str(job_id)
        if method in ("get", "details"):
            cached = self.finished.lookup(job_id)
            if cached is not None:
                owner, short, details = cached
                if principal is not None and not principal.sees(owner):
                    raise ApiError(404, f"no job with uuid {job_id}")
                if method == "get":
                    return short
                if details is not None:
                    return details
        if principal is not None and principal.role != "admin":
            short = await self._get(job_id)
            if short is None or not principal.sees(short.get("owner")):
                raise ApiError(404, f"no job with uuid {job_id}")
            if method == "get":
                return short
        answer = await (self._get(job_id) if method == "get" else self.call(method, job_id))
        if answer is None:
            raise ApiError(404, f"no job with uuid {job_id}")
        if method == "details":
            self._keep(self.finished.keep_details, job_id, answer)
        return answer

    async def _get(self, job_id: str) -> dict | None:
        short = await self.call("get", job_id)
        if short is not None:
            self._keep(self.finished.keep_short, job_id, short)
        return short

    def _keep(self, keep, job_id: str, answer: dict) -> None:
        if answer.get("status") not in TERMINAL:
            return
        if self._feed is None:
            self._feed = AfterEndFeed(self.finished, lambda: self.handle)
        keep(job_id, answer)

    def close(self) -> None:
        """Stop following the store's feed (the cache stops being kept current)."""
        if self._feed is not None:
            self._feed.stop()
