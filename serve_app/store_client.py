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
from tasks.settings import Settings

logger = logging.getLogger(__name__)


class StoreClient:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.handle = get_or_create_store(settings)

    async def call(self, method: str, *args):
        try:
            return await getattr(self.handle, method).remote(*args)
        except ray_errors.ActorDiedError:
            logger.warning("the JobStore actor is gone; creating it again from storage")
            self.handle = get_or_create_store(self.settings)
            return await getattr(self.handle, method).remote(*args)

    async def for_job(self, method: str, job_id) -> object:
        """Call a per-job method; a job the store does not know is the client's 404."""
        answer = await self.call(method, str(job_id))
        if answer is None:
            raise ApiError(404, f"no job with uuid {job_id}")
        return answer
