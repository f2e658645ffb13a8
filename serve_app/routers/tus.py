"""`/uploads/tus`: resumable chunked uploads (tus 1.0 core + creation), in bounded memory.

Serve's proxy and replica queue a request body without backpressure, so one
multipart `POST /jobs` of 1 GiB grows the service by more than the file
(bench/RESULTS.md). Here a file comes in chunks of at most `MAX_CHUNK_BYTES`,
each a request of its own, written to the upload's staging folder in storage
(`Storage.stage_chunk`: a local file, or one object per chunk merged at the end
on S3). The service holds one chunk per request at most.

    POST  /uploads/tus          Upload-Length, Upload-Metadata: filename <base64>
                                -> 201, Location: /uploads/tus/<id>
    HEAD  /uploads/tus/<id>     -> Upload-Offset, Upload-Length (and Upload-File-Url once complete)
    PATCH /uploads/tus/<id>     Upload-Offset, Content-Type: application/offset+octet-stream
                                -> 204, Upload-Offset; the last one also Upload-File-Url

A complete upload lies at `uploads/<id>/<filename>`, the `file_url` that
`POST /jobs` claims, exactly like a presigned upload (`serve_app/routers/uploads.py`);
unclaimed ones are deleted after `upload_expiry_hours` like those.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import posixpath
import uuid as uuid_lib

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from serve_app.auth import authenticate, require_key, require_role
from serve_app.errors import ApiError, documented
from serve_app.multipart_stream import safe_filename, too_large

TUS_VERSION = "1.0.0"
MAX_CHUNK_BYTES = 8 * 1024 * 1024
"""Largest PATCH body: what one request may make the service hold."""
CHUNK_MEDIA_TYPE = "application/offset+octet-stream"
# For browsers (CORS): what a tus client sends and reads.
REQUEST_HEADERS = ("tus-resumable", "upload-length", "upload-metadata", "upload-offset")
RESPONSE_HEADERS = (
    "location",
    "tus-resumable",
    "upload-offset",
    "upload-length",
    "upload-file-url",
)

router = APIRouter(
    prefix="/uploads/tus",
    tags=["uploads"],
    dependencies=[Depends(require_key), Depends(require_role("submit"))],
)


def _headers(**extra: object) -> dict[str, str]:
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    headers.update({key.replace("_", "-"): str(value) for key, value in extra.items()})
    return headers


def _check_version(request: Request) -> None:
    asked = request.headers.get("tus-resumable")
    if asked is not None and asked != TUS_VERSION:
        raise ApiError(412, f"this server speaks tus {TUS_VERSION}, not {asked[:20]!r}")


def _folder(storage, upload_id: str) -> str:
    return storage.path("uploads", f"tus-{upload_id}")


def _filename(metadata: str | None) -> str:
    """The `filename` of a tus `Upload-Metadata` header (`key base64,key base64`)."""
    for pair in (metadata or "").split(","):
        key, _, value = pair.strip().partition(" ")
        if key == "filename":
            try:
                name = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise ApiError(400, "Upload-Metadata: filename is not base64 of UTF-8") from None
            return safe_filename(name)
    raise ApiError(400, "Upload-Metadata must give the file's name: 'filename <base64>'")


def _number(request: Request, header: str) -> int:
    value = (request.headers.get(header) or "").strip()
    if not value.isdigit():
        raise ApiError(400, f"{header} must be a number of bytes, not {value[:40]!r}")
    return int(value)


def _info(storage, upload_id: str, principal) -> dict:
    """The upload's record; 404 for an unknown one or another key's."""
    if len(upload_id) != 32 or any(c not in "0123456789abcdef" for c in upload_id):
        raise ApiError(404, f"no upload {upload_id[:40]}")
    path = posixpath.join(_folder(storage, upload_id), "info.json")
    try:
        info = storage.read_json(path)
    except FileNotFoundError:
        raise ApiError(404, f"no upload {upload_id}") from None
    if not principal.sees(info.get("owner")):
        raise ApiError(404, f"no upload {upload_id}")
    return info


@router.post(
    "",
    status_code=201,
    responses=documented(400, 401, 403, 412, 413),
    summary="Start a resumable upload (tus): `Upload-Length` and `Upload-Metadata: filename`.",
)
async def create(request: Request) -> Response:
    _check_version(request)
    principal = authenticate(request)
    storage, limit = request.app.state.storage, request.app.state.settings.max_upload_bytes
    length = _number(request, "upload-length")
    if length > limit:
        raise too_large(length, limit)
    filename = _filename(request.headers.get("upload-metadata"))
    upload_id = uuid_lib.uuid4().hex
    info = {"length": length, "filename": filename, "owner": principal.owner}
    path = posixpath.join(_folder(storage, upload_id), "info.json")
    try:
        await asyncio.to_thread(storage.write_bytes_atomic, path, json.dumps(info).encode())
    except OSError as exc:
        raise storage.failure(exc, "starting the upload") from exc
    # Under the app's root path (a Serve route prefix); clients resolve it against the server.
    location = f"{request.scope.get('root_path', '')}/uploads/tus/{upload_id}"
    headers = _headers(Location=location, Upload_Offset=0, Tus_Max_Size=limit)
    return Response(status_code=201, headers=headers)


# Out of the OpenAPI schema, like the HEADs Starlette adds to GET routes; docs/api.md has it.
@router.head("/{upload_id}", include_in_schema=False)
async def offset(upload_id: str, request: Request) -> Response:
    storage = request.app.state.storage
    info = await asyncio.to_thread(_info, storage, upload_id, authenticate(request))
    if "file_url" in info:
        headers = _headers(
            Upload_Offset=info["length"],
            Upload_Length=info["length"],
            Upload_File_Url=info["file_url"],
        )
    else:
        received = await asyncio.to_thread(storage.staged_size, _folder(storage, upload_id))
        headers = _headers(Upload_Offset=received, Upload_Length=info["length"])
    return Response(status_code=200, headers=headers)


@router.patch(
    "/{upload_id}",
    status_code=204,
    responses=documented(400, 401, 403, 404, 409, 412, 413, 415, 422),
    summary="Append a chunk (≤ 8 MiB) at `Upload-Offset` to a resumable upload.",
)
async def append(upload_id: str, request: Request) -> Response:
    _check_version(request)
    storage = request.app.state.storage
    if request.headers.get("content-type", "").split(";")[0].strip() != CHUNK_MEDIA_TYPE:
        raise ApiError(415, f"a chunk is sent as Content-Type: {CHUNK_MEDIA_TYPE}")
    at = _number(request, "upload-offset")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_CHUNK_BYTES:
        raise ApiError(413, f"a chunk is at most {MAX_CHUNK_BYTES:,} bytes (got {int(declared):,})")
    info = await asyncio.to_thread(_info, storage, upload_id, authenticate(request))
    folder = _folder(storage, upload_id)
    if "file_url" in info:
        raise ApiError(409, f"upload {upload_id} is already complete ({info['file_url']})")
    received = await asyncio.to_thread(storage.staged_size, folder)
    if at != received:
        raise ApiError(409, f"Upload-Offset is {at:,} but the server has {received:,} bytes")
    chunk = await _read_chunk(request, int(declared) if declared and declared.isdigit() else None)
    end = at + len(chunk)
    if end > info["length"]:
        raise ApiError(400, f"the chunk ends at {end:,}, past Upload-Length {info['length']:,}")
    headers = _headers(Upload_Offset=end)
    try:
        if chunk:
            await asyncio.to_thread(storage.stage_chunk, folder, at, chunk)
        del chunk
        if end == info["length"]:
            file_url = f"uploads/{upload_id}/{info['filename']}"
            await asyncio.to_thread(storage.finish_staged, folder, storage.path(file_url))
            info["file_url"] = file_url
            await asyncio.to_thread(
                storage.write_bytes_atomic,
                posixpath.join(folder, "info.json"),
                json.dumps(info).encode(),
            )
            headers["Upload-File-Url"] = file_url
    except OSError as exc:
        raise storage.failure(exc, "receiving the upload") from exc
    return Response(status_code=204, headers=headers)


async def _read_chunk(request: Request, declared: int | None) -> bytearray:
    """The request body, at most `MAX_CHUNK_BYTES`, in one buffer filled in place (one copy
    of the chunk in this process, not the two or three that growing a buffer makes)."""
    if declared is None:
        chunk = bytearray()
        async for data in request.stream():
            chunk.extend(data)
            if len(chunk) > MAX_CHUNK_BYTES:
                raise ApiError(413, f"a chunk is at most {MAX_CHUNK_BYTES:,} bytes")
        return chunk
    chunk = bytearray(declared)
    view, filled = memoryview(chunk), 0
    async for data in request.stream():
        if filled + len(data) > declared:
            raise ApiError(400, "the chunk is longer than its Content-Length")
        view[filled : filled + len(data)] = data
        filled += len(data)
    view.release()
    if filled != declared:
        raise ApiError(400, f"the chunk ended after {filled:,} of its {declared:,} bytes")
    return chunk
