"""Completion callbacks: POST the final job state to `config.callback_url`.

Signed like the webhooks of commercial conversion APIs: when the operator sets
a callback secret, the request carries `X-Pixyz-Signature: sha256=<hex>`, the
HMAC-SHA256 of the exact body bytes under that secret. Receivers recompute it
and compare in constant time. Delivery is retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging

import httpx

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pixyz-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header_value: str) -> bool:
    """What a receiver runs: True when `header_value` is the signature of `body`."""
    return hmac.compare_digest(sign(body, secret), header_value or "")


async def deliver(url: str, payload: dict, *, secret: str = "", attempts: int = 5) -> dict:
    """POST `payload` as JSON; returns `{"delivered", "attempts", "status_code"|"error"}`."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Pixyz-Event": "job.finished"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    last_error = ""
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        for attempt in range(1, attempts + 1):
            try:
                response = await client.post(url, content=body, headers=headers)
                if response.status_code < 300:
                    return {
                        "delivered": True,
                        "attempts": attempt,
                        "status_code": response.status_code,
                    }
                last_error = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    break  # the receiver refuses it; retrying will not help
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if attempt < attempts:
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
    logger.warning("callback to %s failed after %d attempt(s): %s", url, attempt, last_error)
    return {"delivered": False, "attempts": attempt, "error": last_error}
