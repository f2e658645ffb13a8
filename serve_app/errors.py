"""Error bodies as PiXYZ API clients expect them, for every error the app answers.

`{"detail": {"code": 404, "message": "Not Found", "details": "no job 8c1e..."}}`
— FastAPI's `detail` wrapper around the spec's code/message table.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.models import ErrorBody
from tasks.refusals import Draining, TooManyJobs
from tasks.storage import StorageError

logger = logging.getLogger(__name__)

MESSAGES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    422: "Validation Error",
    425: "Too Early",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}


class ApiError(Exception):
    """Raise anywhere in a request to answer `code` with a readable `details` line."""

    def __init__(self, code: int, details: str, headers: dict[str, str] | None = None):
        super().__init__(details)
        self.code, self.details, self.headers = code, details, headers


def error_body(code: int, details: str) -> dict:
    message = MESSAGES.get(code) or HTTPStatus(code).phrase
    return {"detail": {"code": code, "message": message, "details": details}}


def error_response(code: int, details: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, details), status_code=code, headers=headers)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return error_response(exc.code, exc.details, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException):
        details = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, details, getattr(exc, "headers", None))

    @app.exception_handler(TooManyJobs)
    async def _too_many_jobs(_: Request, exc: TooManyJobs):
        return error_response(429, str(exc), {"Retry-After": "5"})

    @app.exception_handler(Draining)
    async def _draining(_: Request, exc: Draining):
        return error_response(503, str(exc), {"Retry-After": "30"})

    @app.exception_handler(StorageError)
    async def _storage_error(_: Request, exc: StorageError):
        # 507: the storage is full (retry once space is freed); 503: it failed otherwise.
        return error_response(507 if exc.full else 503, str(exc), {"Retry-After": "30"})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError):
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
            problems.append(f"{where}: {err.get('msg')}")
        return error_response(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500, f"internal error ({type(exc).__name__}); the server log has the details"
        )


# The error responses each route documents in the OpenAPI schema.
def documented(*codes: int) -> dict:
    return {
        code: {"description": MESSAGES.get(code, HTTPStatus(code).phrase), "model": ErrorBody}
        for code in codes
    }


def documented_as_json(*codes: int) -> dict:
    """`documented` for a route whose success is not JSON: FastAPI would file a `model`
    under the route's own media type (text/plain), but error bodies are always JSON."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}  # registered by the routes using `documented`
    return {
        code: {
            "description": MESSAGES.get(code, HTTPStatus(code).phrase),
            "content": {"application/json": {"schema": ref}},
        }
        for code in codes
    }
