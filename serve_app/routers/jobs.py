"""`/jobs`: create, list, inspect and cancel jobs."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid as uuid_lib
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from serve_app.auth import authenticate, require_key, require_role
from serve_app.errors import ApiError, documented, documented_as_json
from serve_app.job_request import JobConfig, build_config, parse_json_object
from serve_app.models import JobDetails, JobList, JobShort
from serve_app.multipart_stream import stream_form
from tasks import records
from tasks.processes import CUSTOM, params_model, script_entry_error
from tasks.processes._params import field_errors

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_key)])

MAX_SCRIPT_BYTES = 1024 * 1024
KEEPALIVE_SECONDS = 15.0
"""Longest silence on an events stream: a `: ping` comment is sent after it (proxies cut idle streams)."""
_UPLOAD_KEY = re.compile(r"^uploads/[0-9a-f]{32}/(?!\.\.?$)[^/\\\x00-\x1f\x7f]+$")

JOB_FORM_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "process": {
                            "type": "string",
                            "default": "custom",
                            "description": "Process to execute",
                        },
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "Input file (a model, or a .zip/.tar.gz holding one)",
                        },
                        "file_url": {
                            "type": "string",
                            "description": "Instead of `file`: the `file_url` from POST /uploads",
                        },
                        "script": {
                            "type": "string",
                            "format": "binary",
                            "description": "Python script for the `custom` process",
                        },
                        "params": {
                            "type": "string",
                            "default": "{}",
                            "description": "JSON object handed to the process; its schema is"
                            " the process's params_schema (GET /processes/{name})",
                            "contentMediaType": "application/json",
                        },
                        "name": {"type": "string", "description": "A free label for the job"},
                        "config": {
                            "type": "string",
                            "default": "{}",
                            "description": "JSON object: how to run the job (its schema:"
                            " contentSchema)",
                            "contentMediaType": "application/json",
                            "contentSchema": JobConfig.model_json_schema(),
                        },
                    },
                }
            }
        },
    }
}


@router.get(
    "",
    response_model=JobList,
    responses=documented(401),
    summary="List the statuses of all registered jobs.",
)
async def list_jobs(request: Request) -> Response:
    principal = authenticate(request)
    owner = None if principal.role == "admin" else principal.owner
    body = await request.app.state.store.call("list_json", owner)
    return Response(content=body, media_type="application/json")


@router.post(
    "",
    response_model=JobShort,
    responses=documented(400, 401, 403, 413, 422, 429, 503, 507),
    openapi_extra=JOB_FORM_SCHEMA,
    dependencies=[Depends(require_role("submit"))],
    summary="Create a new job.",
)
async def create_job(request: Request) -> JobShort:
    state = request.app.state
    settings, storage = state.settings, state.storage
    job_id = str(uuid_lib.uuid4())

    def open_target(field: str, filename: str):
        if field == "file":
            path = storage.job_path(job_id, "inputs", filename)
        elif field == "script":
            path = storage.job_path(job_id, "script", "script.py")
        else:
            raise ApiError(
                400, f"unexpected file in form field '{field}' (files go in 'file' or 'script')"
            )
        return path, storage.open_write(path)

    try:
        try:
            form = await stream_form(
                request,
                max_bytes=settings.max_upload_bytes,
                chunk_bytes=settings.upload_chunk_bytes,
                open_target=open_target,
            )
            record = await asyncio.to_thread(_validate, state, job_id, form, authenticate(request))
        except OSError as exc:
            raise storage.failure(exc, "receiving the upload") from exc
        short = await state.store.call("create", record, authenticate(request).role != "admin")
    except BaseException:
        await asyncio.to_thread(_discard_files, storage, job_id)
        raise
    return JobShort(**short)


def _discard_files(storage, job_id: str) -> None:
    """Remove what a refused submission wrote; the refusal, not this clean-up, is the answer."""
    try:
        storage.delete(storage.job_path(job_id), True)
    except OSError:
        logger.exception("could not remove the files of refused job %s", job_id)


def _validate(state, job_id: str, form, principal) -> dict:
    """Check the parsed form and turn it into a new job record (runs in a thread: may touch storage)."""
    settings, storage, processes = state.settings, state.storage, state.processes
    fields = form.fields
    process_name = (fields.get("process") or CUSTOM).strip()
    for text_only in ("file", "script"):
        if text_only in fields and fields[text_only]:
            raise ApiError(400, f"'{text_only}' must be sent as a file upload, not as a text field")
    params = parse_json_object(fields.get("params"), "params")
    raw_config = parse_json_object(fields.get("config"), "config")
    script = form.files.get("script")

    if process_name == CUSTOM:
        if script is None:
            raise ApiError(400, "process 'custom' needs a Python script in the 'script' field")
        if not principal.can("script"):
            raise ApiError(
                403,
                f"this key's role '{principal.role}' cannot run custom scripts (needs 'script')",
            )
        if not settings.allow_scripts:
            raise ApiError(
                403,
                "custom scripts are disabled on this server (the operator can enable them with PIXYZ_ALLOW_SCRIPTS=true)",
            )
    spec = processes.get(process_name)
    if spec is None:
        known = ", ".join(sorted(processes))
        raise ApiError(400, f"unknown process '{process_name}'; available: {known}")
    config = build_config(
        raw_config,
        spec,
        settings.default_time_limit,
        queues=settings.queue_resources,
        callback_allowed_networks=settings.callback_allowed_networks,
    )

    warnings = list(config.warnings) + _check_params(spec, params)
    if script is not None:
        if process_name != CUSTOM:
            warnings.append(f"a script was sent with process '{process_name}' and was ignored")
        else:
            if script.size > MAX_SCRIPT_BYTES:
                raise ApiError(413, f"script is over {MAX_SCRIPT_BYTES:,} bytes")
            with storage.fs.open(script.path, "rb") as f:
                problem = script_entry_error(f.read(), config.entrypoint)
            if problem:
                raise ApiError(400, problem)

    inputs = []
    if "file" in form.files:
        inputs.append(form.files["file"].filename)
    file_url = (fields.get("file_url") or "").strip()
    if file_url:
        if inputs:
            raise ApiError(400, "send either 'file' or 'file_url', not both")
        inputs.append(_claim_upload(storage, settings, job_id, file_url))

    name = fields.get("name")
    return records.new_record(
        job_id,
        process=process_name,
        name=name if name else None,
        params=params,
        config=config.as_dict(),
        queue=config.queue,
        time_limit=config.time_limit,
        inputs=inputs,
        script="script.py" if (script is not None and process_name == CUSTOM) else None,
        warnings=warnings,
        owner=principal.owner,
    )


def _check_params(spec, params: dict) -> list[str]:
    """400 naming each wrong param (against the process's `Params`); warnings for unknown names."""
    model = params_model(spec)
    if model is None:
        return []
    try:
        model.model_validate(params)
    except ValidationError as exc:
        raise ApiError(400, field_errors(exc)) from None
    if not model.model_fields:  # a free-form model (api_test): every name is welcome
        return []
    return [
        f"params.{name} is not a parameter of process '{spec.name}'; it was kept and is ignored"
        for name in sorted(set(params) - set(model.model_fields))
    ]


def _claim_upload(storage, settings, job_id: str, file_url: str) -> str:
    """Move an object uploaded through a presigned URL or in chunks into the job's inputs."""
    if not _UPLOAD_KEY.match(file_url):
        raise ApiError(400, "file_url must be the 'file_url' value returned by POST /uploads")
    source = storage.path(file_url)
    if not storage.exists(source):
        raise ApiError(
            400, f"nothing was uploaded to {file_url} (PUT the file to the presigned URL first)"
        )
    size, limit = storage.size(source), settings.max_upload_bytes
    if size > limit:
        storage.delete(source)
        raise ApiError(
            413,
            f"the uploaded file has {size:,} bytes, over this server's limit of {limit:,} bytes",
        )
    filename = file_url.rsplit("/", 1)[1]
    storage.move(source, storage.job_path(job_id, "inputs", filename))
    return filename


@router.get(
    "/{job_uuid}",
    response_model=JobShort,
    responses=documented(401, 404, 422),
    summary="Retrieve the status of a specific job.",
)
async def job_status(job_uuid: UUID, request: Request) -> JobShort:
    return JobShort(**await request.app.state.store.for_job("get", job_uuid, authenticate(request)))


@router.delete(
    "/{job_uuid}",
    response_model=JobShort,
    responses=documented(400, 401, 403, 404, 422),
    summary="Cancel a job (status REVOKED).",
    dependencies=[Depends(require_role("submit"))],
)
async def cancel_job(job_uuid: UUID, request: Request) -> JobShort:
    short = await request.app.state.store.for_job("cancel", job_uuid, authenticate(request))
    if short["status"] not in (records.REVOKED,):
        raise ApiError(
            400, f"job {job_uuid} already finished with status {short['status']}; nothing to cancel"
        )
    return JobShort(**short)


@router.get(
    "/{job_uuid}/details",
    response_model=JobDetails,
    responses=documented(401, 404, 422),
    summary="Retrieve detailed information about a specific job.",
)
async def job_details(job_uuid: UUID, request: Request) -> JobDetails:
    details = await request.app.state.store.for_job("details", job_uuid, authenticate(request))
    return JobDetails(**details)


@router.get(
    "/{job_uuid}/events",
    response_class=StreamingResponse,
    responses={
        **documented_as_json(400, 401, 404, 422),
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `status`, `progress` and `step` events, then `end`",
        },
    },
    summary="Follow a job: its status, progress and steps as Server-Sent Events until it ends.",
)
async def job_events(
    job_uuid: UUID,
    request: Request,
    since: int | None = Query(
        None, ge=0, description="Resume after this event id (else the Last-Event-ID header)"
    ),
) -> StreamingResponse:
    store = request.app.state.store
    await store.for_job("get", job_uuid, authenticate(request))  # 404: unknown, or not yours
    if since is None:
        since = _last_event_id(request.headers.get("last-event-id"))
    job_id = str(job_uuid)

    async def stream():
        sent = since
        while True:
            answer = await store.call("events_since", job_id, sent, KEEPALIVE_SECONDS)
            if answer is None:  # deleted meanwhile (retention)
                yield _sse("end", {"uuid": job_id, "status": records.UNKNOWN, "deleted": True})
                return
            for event in answer["events"]:
                yield _sse(event["event"], event["data"], event["id"])
                sent = event["id"]
            if answer["short"]["status"] in records.TERMINAL:
                yield _sse("end", answer["short"])
                return
            if not answer["events"]:
                yield b": ping\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _last_event_id(header: str | None) -> int:
    if header is None or not header.strip():
        return 0
    if not header.strip().isdigit():
        raise ApiError(400, f"Last-Event-ID must be an event id (a number), not {header[:40]!r}")
    return int(header.strip())


def _sse(kind: str, data: dict, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
