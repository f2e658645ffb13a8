"""`GET /backend/get_task_meta/{uuid}`: a job as a task backend (Celery-style meta) describes it."""

from uuid import UUID

from fastapi import APIRouter, Depends, Request

from serve_app.auth import authenticate, require_key
from serve_app.errors import documented
from serve_app.models import TaskMeta

router = APIRouter(prefix="/backend", tags=["backend"], dependencies=[Depends(require_key)])


@router.get(
    "/get_task_meta/{job_uuid}",
    response_model=TaskMeta,
    responses=documented(401, 404, 422),
    summary="Retrieve metadata for a backend task.",
)
async def get_task_meta(job_uuid: UUID, request: Request) -> TaskMeta:
    meta = await request.app.state.store.for_job("task_meta", job_uuid, authenticate(request))
    return TaskMeta(**meta)
