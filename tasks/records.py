"""The job record: its one type, `JobRecord`, and the views of it the API serves.

`JobShort` (what `GET /jobs/{uuid}` answers) ⊂ `JobDetails` (`/details`) ⊂ `JobRecord`
(what the JobStore keeps and checkpoints to `state.json`): one chain of pydantic models,
so the store, the checkpoints and the API's OpenAPI cannot drift apart. In the store a
record travels as the model's plain dict (`model_dump`), because records cross process
boundaries all the time (JobStore actor ↔ API replicas ↔ storage) and are changed in
place on every progress report; `new_record` and `checked` go through the model.
This module is the one place that knows their fields.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

SENT, PENDING, RECEIVED, STARTED, RUNNING = "SENT", "PENDING", "RECEIVED", "STARTED", "RUNNING"
RETRY, SUCCESS, FAILURE, REVOKED, UNKNOWN = "RETRY", "SUCCESS", "FAILURE", "REVOKED", "UNKNOWN"
TERMINAL = frozenset({SUCCESS, FAILURE, REVOKED})


class JobShort(BaseModel):
    uuid: str
    name: str | None = None
    status: str = Field(
        examples=["SENT"],
        description="SENT, PENDING, RECEIVED, STARTED, RUNNING, RETRY, SUCCESS, FAILURE, REVOKED or UNKNOWN",
    )
    progress: int | None = Field(
        default=None, description="0-100, or null when the process reports none"
    )
    error: str | None = Field(
        default=None, description="Why the job failed: one line; the story is in `traceback`"
    )


class TimeInfo(BaseModel):
    request: str
    started: str | None = None
    stopped: str | None = None


class Step(BaseModel):
    duration: float = Field(description="seconds")
    info: str


class JobDetails(JobShort):
    process: str
    queue: str
    time_info: TimeInfo
    steps: list[Step]
    retry: int
    result: dict[str, Any] | None = None
    traceback: str | None = None
    warnings: list[str] = []
    children: list[dict[str, Any]] = []
    node: str | None = Field(
        default=None, description="Ray node id that ran the job's last attempt"
    )
    callback: dict[str, Any] | None = Field(
        default=None, description="delivery of config.callback_url, once attempted"
    )


class JobRecord(JobDetails):
    """Everything the JobStore keeps of a job (its `state.json`)."""

    owner: str | None = Field(None, description="Label of the key that created it (None: admin)")
    params: dict[str, Any] = Field(default_factory=dict, description="As the client sent them")
    config: dict[str, Any] = Field(default_factory=dict, description="JobConfig, completed")
    time_limit: float = Field(description="Seconds each attempt may run")
    inputs: list[str] = Field(default_factory=list, description="Input file names in storage")
    script: str | None = Field(None, description="`script.py` for custom jobs")
    attempt: int = Field(
        0, description="Attempts launched so far (reports of older ones are stale)"
    )
    outputs: list[str] = Field(default_factory=list, description="Output paths, once saved")
    archive: str | None = Field(None, description="None, `building`, `ready` or `failed`")
    archive_error: str | None = Field(None, description="Why the last archive build failed")
    timeout_retried: bool = Field(False, description="The one retry after a time limit was used")


SHORT_FIELDS = tuple(JobShort.model_fields)
DETAIL_FIELDS = tuple(JobDetails.model_fields)

ERROR_CHARS = 1000  # `error` is one line a person reads; the whole story goes in `traceback`
TRACEBACK_CHARS = 64 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def new_record(
    job_id: str,
    *,
    process: str,
    name: str | None,
    params: dict,
    config: dict,
    queue: str,
    time_limit: float,
    inputs: list[str],
    script: str | None = None,
    warnings: list[str] | None = None,
    owner: str | None = None,
) -> dict:
    """A freshly accepted job (status SENT), as the plain dict the store keeps."""
    return JobRecord(
        uuid=job_id,
        owner=owner,
        name=name,
        status=SENT,
        process=process,
        params=params,
        config=config,
        queue=queue,
        time_limit=time_limit,
        inputs=inputs,
        script=script,
        warnings=list(warnings or []),
        time_info=TimeInfo(request=now_iso()),
        steps=[],
        retry=0,
    ).model_dump()


def checked(data: object) -> dict:
    """A record read back from storage, completed with today's defaults; ValueError if it is
    not one (pydantic's ValidationError is a ValueError)."""
    return JobRecord.model_validate(data).model_dump()


def one_line(error: object, limit: int = ERROR_CHARS) -> str:
    """An error as one readable line: no colour codes, lines joined, at most `limit` characters."""
    text = error if isinstance(error, str) else _exception_line(error)
    text = " ".join(_ANSI.sub("", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain_traceback(text: str) -> str:
    """A traceback without terminal colour codes, its end kept when it is very long."""
    text = _ANSI.sub("", text)
    return text if len(text) <= TRACEBACK_CHARS else "…" + text[-(TRACEBACK_CHARS - 1) :]


def _exception_line(exc: object) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def short_state(record: dict) -> dict:
    """`uuid, name, status, progress, error`: what `GET /jobs/{uuid}` answers."""
    return {key: record.get(key) for key in SHORT_FIELDS}


def index_entry(record: dict) -> dict:
    """What the compact index keeps per job: the short state plus what listing needs."""
    entry = short_state(record)
    entry["process"] = record.get("process")
    entry["owner"] = record.get("owner")
    entry["request"] = record["time_info"]["request"]
    return entry


def details(record: dict) -> dict:
    """The short state plus time_info, steps, retry, result (and a few extras clients ignore)."""
    return {key: record.get(key) for key in DETAIL_FIELDS} | {
        "warnings": record.get("warnings", []),
        "children": record.get("children", []),
    }


def task_meta(record: dict) -> dict:
    """The shape pipelines that integrate a task backend expect (Celery's task meta)."""
    return {
        "status": record["status"],
        "result": record["result"] if record["status"] == SUCCESS else record["error"],
        "traceback": record.get("traceback"),
        "children": record.get("children", []),
        "parent_id": None,
        "task_id": record["uuid"],
        "date_done": record["time_info"]["stopped"],
    }
