"""`POST /uploads`: a presigned URL to upload a large file straight to the object store.

Serve's proxy buffers request bodies, so multi-GB files are better PUT
directly to S3; the job is then created with `file_url` instead of `file`.
"""

import uuid as uuid_lib

from fastapi import APIRouter, Depends, Request

from serve_app.auth import require_key
from serve_app.errors import ApiError, documented
from serve_app.models import UploadRequest, UploadTicket
from serve_app.multipart_stream import safe_filename

router = APIRouter(prefix="/uploads", tags=["uploads"], dependencies=[Depends(require_key)])

EXPIRES_SECONDS = 3600


@router.post(
    "",
    response_model=UploadTicket,
    responses=documented(400, 401, 422),
    summary="Get a presigned URL to upload a large input file directly to storage.",
)
async def create_upload(body: UploadRequest, request: Request) -> UploadTicket:
    storage = request.app.state.storage
    if not storage.can_presign():
        raise ApiError(
            400, "this server's storage cannot take direct uploads; send the file in POST /jobs"
        )
    filename = safe_filename(body.filename)
    upload_id = uuid_lib.uuid4().hex
    key = f"uploads/{upload_id}/{filename}"
    url = storage.presign_put(storage.path(key), expires=EXPIRES_SECONDS)
    return UploadTicket(upload_id=upload_id, url=url, file_url=key, expires_in=EXPIRES_SECONDS)
