"""What a `POST /jobs` form means: parsing and checking params and config.

Kept apart from the route so the rules read in one place: JSON objects only,
`null` means default, internal keys are ignored with a warning, every other
mistake is a 400 that says which field and why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from serve_app.errors import ApiError
from tasks import egress
from tasks.processes import QUEUES, ProcessSpec

IGNORED_CONFIG_KEYS = ("script", "data", "uuid", "shadow")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_TIME_LIMIT = 7 * 24 * 3600.0
MAX_JSON_DEPTH = 32


@dataclass
class JobConfig:
    entrypoint: str = "main"
    queue: str = "cpu"
    time_limit: float = 3600.0
    callback_url: str | None = None
    retry_on_timeout: bool | None = None
    extra: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            **self.extra,
            "entrypoint": self.entrypoint,
            "queue": self.queue,
            "time_limit": self.time_limit,
            "callback_url": self.callback_url,
            "retry_on_timeout": self.retry_on_timeout,
        }


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
    callback_allowed_networks: Sequence[str] = (),
) -> JobConfig:
    """`callback_allowed_networks`: the operator's `PIXYZ_CALLBACK_ALLOWED_NETWORKS`
    (without them, a callback URL naming a non-public IP address is refused)."""
    config = JobConfig(queue=process.queue, time_limit=default_time_limit)
    for key, value in raw.items():
        if key in IGNORED_CONFIG_KEYS:
            config.warnings.append(f"config key '{key}' names an internal path and was ignored")
        elif value is None:
            continue  # clients send null for "use the default"
        elif key == "entrypoint":
            if not isinstance(value, str) or not _IDENTIFIER.match(value):
                raise ApiError(
                    400, f"config.entrypoint must be a Python function name, got {value!r}"
                )
            config.entrypoint = value
        elif key == "queue":
            if value not in QUEUES:
                raise ApiError(
                    400, f"config.queue must be one of {', '.join(QUEUES)}, got {value!r}"
                )
            config.queue = value
        elif key == "time_limit":
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0 < value <= MAX_TIME_LIMIT
            ):
                raise ApiError(
                    400,
                    f"config.time_limit must be a number of seconds in (0, {MAX_TIME_LIMIT:g}], got {value!r}",
                )
            config.time_limit = float(value)
        elif key == "retry_on_timeout":
            if not isinstance(value, bool):
                raise ApiError(400, f"config.retry_on_timeout must be true or false, got {value!r}")
            config.retry_on_timeout = value
        elif key == "callback_url":
            if not isinstance(value, str) or not re.match(r"^https?://[^\s]+$", value):
                raise ApiError(400, f"config.callback_url must be an http(s) URL, got {value!r}")
            _check_callback_address(value, callback_allowed_networks)
            config.callback_url = value
        else:
            config.extra[key] = value
    return config


def _check_callback_address(url: str, allowed_networks: Sequence[str]) -> None:
    """400 when the URL's host is an IP address callbacks may not reach (SSRF).

    Only IP literals are judged here, without DNS: a hostname is resolved and
    checked when the callback is delivered (tasks/callbacks.py says why).
    """
    try:
        problem = egress.literal_refusal(url, egress.parse_networks(allowed_networks))
    except httpx.InvalidURL as exc:
        raise ApiError(400, f"config.callback_url is not a valid URL ({exc}): {url!r}") from None
    if problem:
        raise ApiError(
            400, f"config.callback_url {url!r} is refused: {problem}. {egress.ONLY_PUBLIC}"
        )
