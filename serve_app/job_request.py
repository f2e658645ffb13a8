"""What a `POST /jobs` form means: parsing and checking params and config.

Kept apart from the route so the rules read in one place: JSON objects only,
`null` means default, internal keys are ignored with a warning, every other
mistake is a 400 that says which field and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

import httpx
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from serve_app.errors import ApiError
from tasks.processes import ProcessSpec
from tasks.processes._params import field_errors
from tasks.sandbox import egress

IGNORED_CONFIG_KEYS = ("script", "data", "uuid", "shadow")
MAX_TIME_LIMIT = 7 * 24 * 3600.0
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HTTP_URL = re.compile(r"^https?://[^\s]+$")
MAX_JSON_DEPTH = 32


class JobConfig(BaseModel):
    """The `config` form field of `POST /jobs`: how to run the job, not what it computes.

    Validated with the operator's queues and callback networks as context; `null` means
    the default; other keys are kept (clients send their own) and passed to the process.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    entrypoint: str = Field("main", description="The function of a `custom` script to call")
    queue: str | None = Field(
        None, description="Where the job runs: one of the server's queues (default: the process's)"
    )
    time_limit: float | None = Field(
        None,
        gt=0,
        le=MAX_TIME_LIMIT,
        description="Seconds the job may run (default: the server's PIXYZ_DEFAULT_TIME_LIMIT)",
    )
    callback_url: str | None = Field(
        None, description="An http(s) URL the final job details are POSTed to"
    )
    retry_on_timeout: bool | None = Field(
        None,
        description="Past its time limit, run the job once more on the retry queue (gpuhigh)"
        " instead of failing (default: the server's PIXYZ_RETRY_TIMED_OUT_JOBS)",
    )
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @field_validator("entrypoint")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"must be a Python function name, got {value!r}")
        return value

    @field_validator("queue")
    @classmethod
    def _configured_queue(cls, value, info):
        queues = (info.context or {}).get("queues")
        if value is not None and queues is not None and value not in queues:
            raise ValueError(
                f"{value!r} is not a queue of this server; its queues: {', '.join(queues)}"
            )
        return value

    @field_validator("callback_url")
    @classmethod
    def _reachable(cls, value, info):
        if value is None:
            return value
        if not _HTTP_URL.match(value):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        _check_callback_address(value, (info.context or {}).get("callback_networks", ()))
        return value

    @property
    def warnings(self) -> list[str]:
        return self._warnings

    def as_dict(self) -> dict:
        return self.model_dump()


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NotFinite(name)


def parse_json_object(text: str | None, field_name: str) -> dict:
    """`params`/`config` form text → dict. Absent, empty or `null` → {}."""
    if text is None or not text.strip():
        return {}
    try:
        # NaN and Infinity are not JSON (RFC 8259): Python reads them, nothing else can.
        value = json.loads(text, parse_constant=_refuse_constant)
    except _NotFinite as exc:
        raise ApiError(
            400,
            f"'{field_name}' is not valid JSON: {exc} is not a number JSON allows (use null or a finite number)",
        ) from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, f"'{field_name}' is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from exc
    except RecursionError:
        raise ApiError(
            400, f"'{field_name}' is nested too deeply (limit {MAX_JSON_DEPTH} levels)"
        ) from None
    except ValueError:  # int() refuses numbers past sys.get_int_max_str_digits() (4300)
        raise ApiError(
            400, f"'{field_name}' is not valid JSON: a number has too many digits"
        ) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ApiError(400, f"'{field_name}' is nested too deeply (limit {MAX_JSON_DEPTH} levels)")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"'{field_name}' must be a JSON object, not {type(value).__name__}")
    try:  # a lone surrogate escape ("\ud800") parses, then breaks every UTF-8 response about the job
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ApiError(
            400, f"'{field_name}' is not valid JSON: a \\u escape is half of a surrogate pair"
        ) from None
    return value


def _depth(value, level: int = 1) -> int:
    """Nesting depth of a JSON value, stopping as soon as it passes the limit."""
    if level > MAX_JSON_DEPTH or not isinstance(value, dict | list):
        return level
    children = value.values() if isinstance(value, dict) else value
    return max((_depth(child, level + 1) for child in children), default=level)


def build_config(
    raw: dict,
    process: ProcessSpec,
    default_time_limit: float,
    *,
    queues: Iterable[str],
    callback_allowed_networks: Sequence[str] = (),
) -> JobConfig:
    """`raw` checked (a 400 naming each wrong key) and completed with the defaults.

    `queues`: the operator's queue map; `callback_allowed_networks`: the operator's
    `PIXYZ_CALLBACK_ALLOWED_NETWORKS` (without them, a callback URL naming a non-public IP
    address is refused)."""
    queues = list(queues)
    given, warnings = {}, []
    for key, value in raw.items():
        if key in IGNORED_CONFIG_KEYS:
            warnings.append(f"config key '{key}' names an internal path and was ignored")
        elif value is not None:  # clients send null for "use the default"
            given[key] = value
    context = {"queues": queues, "callback_networks": callback_allowed_networks}
    try:
        config = JobConfig.model_validate(given, context=context)
    except ValidationError as exc:
        raise ApiError(400, field_errors(exc, "config")) from None
    if config.queue is None:  # the process's queue, where this server has it
        config.queue = process.queue if process.queue in queues else "cpu"
    if config.time_limit is None:
        config.time_limit = float(default_time_limit)
    config._warnings.extend(warnings)
    return config


def _check_callback_address(url: str, allowed_networks: Sequence[str]) -> None:
    """400 when the URL's host is an IP address callbacks may not reach (SSRF).

    Only IP literals are judged here, without DNS: a hostname is resolved and
    checked when the callback is delivered (tasks/callbacks.py says why).
    """
    try:
        problem = egress.literal_refusal(url, egress.parse_networks(allowed_networks))
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if problem:
        raise ValueError(f"{url!r} is refused: {problem}. {egress.ONLY_PUBLIC}")
