"""`POST /uploads`: a presigned URL to upload a large file straight to the object store.

Serve's proxy buffers request bodies, so multi-GB files are better PUT
directly to S3; the job is then created with `file_url` instead of `file`.
The URL is signed for the declared size (within `max_upload_bytes`), the size
is checked again when a job claims the object, and objects no job claimed are
deleted after `upload_expiry_hours` (the JobStore's sweep).
"""

import uuid as uuid_lib

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute

from serve_app.auth import check_role, require_key, require_role
from serve_app.errors import ApiError, documented
from serve_app.models import UploadRequest, UploadTicket
from serve_app.multipart_stream import safe_filename, too_large

ROLE = "submit"


class KeyBeforeBodyRoute(APIRoute):
    """Checks the key and its role before FastAPI parses a declared body, so a keyless
    call is a 401 and a `read` key's a 403, never a 400/422."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def key_first(request: Request):
            check_role(request, ROLE)
            return await handler(request)

        return key_first


# The dependencies stay too: they are what declares the key in the OpenAPI schema.
router = APIRouter(
    prefix="/uploads",
    tags=["uploads"],
    dependencies=[Depends(require_key), Depends(require_role(ROLE))],
    route_class=KeyBeforeBodyRoute,
)

EXPIRES_SECONDS = 3600


@router.post(
    "",
    response_model=UploadTicket,
    responses=documented(400, 401, 403, 413, 422),
    summary="Get a presigned URL to upload a large input file directly to storage.",
)
async def create_upload(body: UploadRequest, request: Request) -> UploadTicket:
    storage = request.app.state.storage
    if not storage.can_presign():
        raise ApiError(
            400, "this server's storage cannot take direct uploads; send the file in POST /jobs"
        )
    limit = request.app.state.settings.max_upload_bytes
    if body.size > limit:
        raise too_large(body.size, limit)
    filename = safe_filename(body.filename)
    upload_id = uuid_lib.uuid4().hex
    key = f"uploads/{upload_id}/{filename}"
    url = storage.presign_put(storage.path(key), body.size, expires=EXPIRES_SECONDS)
    return UploadTicket(upload_id=upload_id, url=url, file_url=key, expires_in=EXPIRES_SECONDS)
