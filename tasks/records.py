"""The job record: one plain dict per job, and the views of it the API serves.

Records are plain JSON-able dicts (not objects) because they cross process
boundaries all the time: JobStore actor ↔ API replicas ↔ storage checkpoints.
This module is the one place that knows their fields.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

SENT, PENDING, RECEIVED, STARTED, RUNNING = "SENT", "PENDING", "RECEIVED", "STARTED", "RUNNING"
RETRY, SUCCESS, FAILURE, REVOKED, UNKNOWN = "RETRY", "SUCCESS", "FAILURE", "REVOKED", "UNKNOWN"
TERMINAL = frozenset({SUCCESS, FAILURE, REVOKED})

SHORT_FIELDS = ("uuid", "name", "status", "progress", "error")

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
    """A freshly accepted job (status SENT)."""
    return {
        "uuid": job_id,
        "owner": owner,
        "name": name,
        "status": SENT,
        "progress": None,
        "error": None,
        "traceback": None,
        "process": process,
        "params": params,
        "config": config,
        "queue": queue,
        "time_limit": time_limit,
        "inputs": inputs,
        "script": script,
        "warnings": list(warnings or []),
        "time_info": {"request": now_iso(), "started": None, "stopped": None},
        "steps": [],
        "retry": 0,
        "attempt": 0,
        "result": None,
        "outputs": [],
        "children": [],
        "node": None,
        "archive": None,
    }


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
    view = short_state(record)
    view.update(
        process=record["process"],
        queue=record["queue"],
        time_info=record["time_info"],
        steps=record["steps"],
        retry=record["retry"],
        result=record["result"],
        traceback=record.get("traceback"),
        warnings=record.get("warnings", []),
        children=record.get("children", []),
        callback=record.get("callback"),
        node=record.get("node"),
    )
    return view


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
