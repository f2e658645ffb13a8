"""Errors of the PiXYZ API client: what the server answered, as exceptions you can catch.

Every error the server sends has the body
`{"detail": {"code": 404, "message": "Not Found", "details": "no job with uuid ..."}}`;
`raise_for_response` turns it into the subclass of `PixyzError` for its code, keeping
the three fields. Problems found on this side (the server cannot be reached, a job
failed or took too long, a download came back short) are `PixyzError`s too, with
`code` None, so one `except PixyzError` catches everything the client raises.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import httpx


class PixyzError(Exception):
    """An error answered by the server (`code` is its HTTP status) or found by the client."""

    def __init__(self, code: int | None, message: str, details: str = "") -> None:
        self.code = code
        self.message = message
        self.details = details
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.code} {self.message}" if self.code is not None else self.message
        return f"{head}: {self.details}" if self.details else head


class BadRequest(PixyzError):
    """400 or 422: the request was wrong (bad JSON params, unknown process, malformed uuid)."""


class AuthError(PixyzError):
    """401: the API key is missing or wrong."""


class Forbidden(PixyzError):
    """403: the server refuses this (custom scripts not enabled by the operator)."""


class NotFound(PixyzError):
    """404: no such job, process or output file."""


class Conflict(PixyzError):
    """409: the request does not fit the resource's state (a chunk at the wrong offset)."""


class PayloadTooLarge(PixyzError):
    """413: the upload is over the server's size limit."""


class TooEarly(PixyzError):
    """425: the outputs archive is not ready (job not finished, or still being zipped)."""

    def __init__(self, code: int | None, message: str, details: str = "", retry_after: float = 1.0):
        self.retry_after = retry_after
        super().__init__(code, message, details)


class ServerError(PixyzError):
    """5xx: a bug or an outage on the server's side; its log has the details."""


class Unreachable(PixyzError):
    """The server could not be reached or stopped answering (no HTTP status)."""


class TransferError(PixyzError):
    """A download came back short, or an archive that does not open."""


class WaitTimeout(PixyzError, TimeoutError):
    """`Job.wait(timeout=...)` ran out before the job ended."""


class JobFailed(PixyzError):
    """The job ended FAILURE or REVOKED; raised by `Job.wait(raise_on_failure=True)`.

    `status` is the final status, `error` the job's error message and `job` its
    final details (with `traceback` when the process raised).
    """

    def __init__(self, uuid: str, status: str, error: str | None, job: dict[str, Any]):
        self.uuid, self.status, self.error, self.job = uuid, status, error, job
        super().__init__(None, f"job {uuid} ended {status}", error or "")


_BY_CODE: dict[int, type[PixyzError]] = {
    400: BadRequest,
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: BadRequest,
    425: TooEarly,
}


def error_from_response(response: httpx.Response) -> PixyzError:
    """The `PixyzError` subclass for an error response, with the server's message and details."""
    code = response.status_code
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "HTTP error"
    message, details = phrase, ""
    try:
        body = response.json()
    except ValueError:
        # Not our JSON body: a proxy or load balancer answered. Keep the start of its text.
        details = response.text.strip()[:300]
    else:
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, dict):
            message = str(detail.get("message") or phrase)
            details = str(detail.get("details") or "")
        elif detail is not None:
            details = str(detail)
    cls = _BY_CODE.get(code) or (ServerError if code >= 500 else PixyzError)
    if cls is TooEarly:
        return TooEarly(code, message, details, retry_after=_retry_after(response))
    return cls(code, message, details)


def raise_for_response(response: httpx.Response) -> httpx.Response:
    """Return a successful response; raise its `PixyzError` otherwise (reads a streamed body)."""
    if response.is_success:
        return response
    response.read()
    raise error_from_response(response)


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0
