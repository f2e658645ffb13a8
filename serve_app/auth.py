"""The `x-api-key` check: SHA-256 of the presented key against the configured hashes.

Every hash is compared (in constant time) so the answer's timing does not tell
which key, or how much of one, matched.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from serve_app.errors import ApiError

# Declared for OpenAPI (the "Authorize" button in /docs); checked by hand below.
api_key_header = APIKeyHeader(name="x-api-key", auto_error=False)

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "x-api-key"}


def key_matches(presented: str, hashes: list[str]) -> bool:
    digest = hashlib.sha256(presented.encode("utf-8")).hexdigest()
    matched = False
    for expected in hashes:
        matched |= hmac.compare_digest(digest, expected)
    return matched


def check_key(request: Request) -> None:
    presented = request.headers.get("x-api-key")
    if not presented:
        raise ApiError(401, "missing x-api-key header", UNAUTHORIZED_HEADERS)
    if not key_matches(presented, request.app.state.settings.api_key_sha256):
        raise ApiError(401, "invalid API key", UNAUTHORIZED_HEADERS)


async def require_key(request: Request, _key: str | None = Depends(api_key_header)) -> None:
    """Dependency of every protected route."""
    check_key(request)


async def key_unless_open(request: Request) -> None:
    """Dependency of the routes clients call without a key (unless the operator closed them)."""
    if not request.app.state.settings.open_routes:
        check_key(request)
