"""The API's handle on the JobStore actor, re-attached if the actor was replaced.

The actor restarts by itself after a crash (calls made meanwhile are retried
by Ray); if it was killed for good, the next call creates it again from the
checkpoints in storage and retries once.
"""

from __future__ import annotations

import logging

from ray import exceptions as ray_errors

from serve_app.errors import ApiError
from tasks.jobstore import get_or_create_store
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
        may not see (another key's job), is the client's 404."""
        job_id = str(job_id)
        if principal is not None and principal.role != "admin":
            short = await self.call("get", job_id)
            if short is None or not principal.sees(short.get("owner")):
                raise ApiError(404, f"no job with uuid {job_id}")
            if method == "get":
                return short
        answer = await self.call(method, job_id)
        if answer is None:
            raise ApiError(404, f"no job with uuid {job_id}")
        return answer
