"""Who is calling: the `x-api-key` check, key roles, and which jobs a key may see.

Keys are stored as SHA-256 hex digests only. Every accepted digest is compared
in constant time on every request, so the answer's timing does not tell which
key, or how much of one, matched.

Roles, each allowing what the previous ones do:
`read` (status, details, outputs of its own jobs), `submit` (also create and
cancel jobs with registered processes, presigned uploads), `script` (also
`custom` scripts), `admin` (every job, whoever created it). Keys from
`PIXYZ_API_KEY` / `PIXYZ_API_KEY_SHA256` are admin keys, as before roles
existed. More keys come from `PIXYZ_API_KEYS_FILE`, re-read when it changes,
so keys are added and revoked without a restart. Jobs remember their creator
as the first 16 hex digits of the key's digest; a non-admin key asking for
another key's job gets 404, as if it did not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from serve_app.errors import ApiError

logger = logging.getLogger(__name__)

# Declared for OpenAPI (the "Authorize" button in /docs); checked by hand below.
api_key_header = APIKeyHeader(name="x-api-key", auto_error=False)

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "x-api-key"}
ROLES = ("read", "submit", "script", "admin")
RELOAD_SECONDS = 1.0


@dataclass(frozen=True)
class Principal:
    role: str
    owner: str
    """First 16 hex digits of the key's SHA-256: what a job records as its creator."""

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, owner: str | None) -> bool:
        return self.role == "admin" or owner == self.owner


class KeyRing:
    """The accepted digests and their roles: the settings' admin keys plus the keys file."""

    def __init__(self, admin_digests: list[str], keys_file: str = ""):
        self.fixed = {digest: "admin" for digest in admin_digests}
        self.path = Path(keys_file) if keys_file else None
        self.from_file: dict[str, str] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0

    def role_of(self, digest: str) -> str | None:
        self._reload_if_changed()
        role = None
        for expected, expected_role in (*self.fixed.items(), *self.from_file.items()):
            if hmac.compare_digest(digest, expected):
                role = expected_role
        return role

    def _reload_if_changed(self) -> None:
        if self.path is None or time.monotonic() - self._checked < RELOAD_SECONDS:
            return
        self._checked = time.monotonic()
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if self.from_file:
                logger.warning("keys file %s is gone: its keys are revoked", self.path)
            self.from_file, self._stamp = {}, None
            return
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._stamp:
            self.from_file, self._stamp = parse_keys_file(self.path), stamp


class RateLimits:
    """Per-key request budgets: a token bucket of `per_minute` tokens refilled continuously."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def wait_seconds(self, key: str) -> int:
        """0 when the request may go ahead (and spends a token), else seconds to wait."""
        if self.per_minute <= 0:
            return 0
        now = time.monotonic()
        tokens, when = self._buckets.get(key, (float(self.per_minute), now))
        tokens = min(self.per_minute, tokens + (now - when) * self.per_minute / 60)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return max(1, int((1 - tokens) * 60 / self.per_minute + 0.999))
        self._buckets[key] = (tokens - 1, now)
        return 0


def parse_keys_file(path: Path) -> dict[str, str]:
    """`<sha256 hex> <role> [label]` per line; `#` starts a comment; bad lines are logged and skipped."""
    keys = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        digest, role = (words + [""])[:2]
        digest = digest.lower()
        if (
            len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
            or role not in ROLES
        ):
            logger.warning(
                "%s:%d skipped: expected '<sha256 hex> <%s> [label]'", path, number, "|".join(ROLES)
            )
            continue
        keys[digest] = role
    return keys


def authenticate(request: Request) -> Principal:
    """The caller's Principal (kept on the request), or 401."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    presented = request.headers.get("x-api-key")
    if not presented:
        raise ApiError(401, "missing x-api-key header", UNAUTHORIZED_HEADERS)
    digest = hashlib.sha256(presented.encode("utf-8")).hexdigest()
    role = request.app.state.keys.role_of(digest)
    if role is None:
        raise ApiError(401, "invalid API key", UNAUTHORIZED_HEADERS)
    wait = request.app.state.rate_limits.wait_seconds(digest[:16])
    if wait:
        raise ApiError(
            429, "this key made too many requests; slow down", {"Retry-After": str(wait)}
        )
    request.state.principal = Principal(role=role, owner=digest[:16])
    return request.state.principal


def check_key(request: Request) -> None:
    authenticate(request)


async def require_key(request: Request, _key: str | None = Depends(api_key_header)) -> Principal:
    """Dependency of every protected route: any valid key."""
    return authenticate(request)


def check_role(request: Request, role: str) -> Principal:
    """The caller's Principal if its role allows `role`: 401 without a valid key, else 403."""
    principal = authenticate(request)
    if not principal.can(role):
        raise ApiError(
            403, f"this key's role '{principal.role}' does not allow this (needs '{role}')"
        )
    return principal


def require_role(role: str):
    """Dependency: a key whose role allows `role` (403 otherwise)."""

    async def check(request: Request, _principal: Principal = Depends(require_key)) -> Principal:  # noqa: B008 (FastAPI's idiom)
        return check_role(request, role)

    return check


async def key_unless_open(request: Request) -> None:
    """Dependency of the routes clients call without a key (unless the operator closed them)."""
    if not request.app.state.settings.open_routes:
        check_key(request)
