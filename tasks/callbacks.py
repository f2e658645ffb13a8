"""Completion callbacks: POST the final job state to `config.callback_url`.

Signed like the webhooks of commercial conversion APIs: when the operator sets
a callback secret, the request carries `X-Pixyz-Signature: sha256=<hex>`, the
HMAC-SHA256 of the exact body bytes under that secret. Receivers recompute it
and compare in constant time. Delivery is retried with exponential backoff.

Callbacks go to public addresses only, unless the operator lists a network in
`PIXYZ_CALLBACK_ALLOWED_NETWORKS`: a `submit` key must not be able to make the
service POST to cloud metadata, localhost or the internal network (SSRF).
The rule lives in `tasks/sandbox/egress.py`:

- at submit (`egress.literal_refusal`), a host written as an IP address, in any form
  the resolver accepts (`127.1`, `2130706433`, `0x7f000001`, `[::ffff:127.0.0.1]`),
  is checked at once and refused with a 400. Hostnames are not resolved there:
  what a name resolves to at submit says nothing about what it resolves to when
  the job ends, maybe hours later, from another node (the JobStore's).
- at delivery (`deliver`, `egress.vetted_addresses`), the host is resolved once per attempt, every address
  it resolves to must pass, and the connection goes to one of those checked
  addresses (the URL is rewritten to the IP; the `Host` header, the TLS SNI
  and the certificate check keep the name), so a second, rebound resolution
  never happens. Redirects are not followed. A refusal is recorded in the job's
  `callback` details, like any failed delivery; it never raises.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import ssl
from collections.abc import Iterable

import httpx

from tasks.sandbox.egress import (
    AddressRefused,
    IPAddress,
    literal_ip,
    parse_networks,
    url_host,
    vetted_addresses,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pixyz-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header_value: str) -> bool:
    """What a receiver runs: True when `header_value` is the signature of `body`."""
    return hmac.compare_digest(sign(body, secret), header_value or "")


async def _post_pinned(
    client: httpx.AsyncClient,
    url: httpx.URL,
    addresses: list[IPAddress],
    body: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    """POST to `url` over a connection to one of `addresses` (the next one when one refuses)."""
    host = url_host(url)
    headers = {**headers, "Host": url.netloc.decode("ascii")}
    extensions = {}
    if url.scheme == "https" and literal_ip(host) is None:
        extensions["sni_hostname"] = host  # SNI and the certificate check use the name
    error: httpx.ConnectError | None = None
    for ip in addresses:
        request = client.build_request(
            "POST",
            url.copy_with(host=str(ip)),
            content=body,
            headers=headers,
            extensions=extensions,
        )
        try:
            return await client.send(request)
        except httpx.ConnectError as exc:
            error = exc
    assert error is not None
    raise error


# -- delivery ----------------------------------------------------------------------


async def deliver(
    url: str,
    payload: dict,
    *,
    secret: str = "",
    attempts: int = 5,
    allowed_networks: Iterable[str] = (),
    verify: ssl.SSLContext | bool = True,
) -> dict:
    """POST `payload` as JSON; returns `{"delivered", "attempts", "status_code"|"error"}`.

    A URL leading to a refused address gives `{"delivered": False, "refused": True,
    "error": <why>}`; a redirect is not followed (`"error"` says where it pointed).
    Never raises: the outcome is recorded in the job's details whatever happens.
    `verify` is httpx's TLS verification (an `ssl.SSLContext` trusts a private CA).
    """
    try:
        return await _deliver(url, payload, secret, attempts, allowed_networks, verify)
    except Exception as exc:  # a callback must never break the job that triggered it
        logger.exception("callback to %s failed unexpectedly", url)
        return {"delivered": False, "attempts": 0, "error": f"{type(exc).__name__}: {exc}"}


async def _deliver(url, payload, secret, attempts, allowed_networks, verify) -> dict:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Pixyz-Event": "job.finished"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    allowed = parse_networks(allowed_networks)
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return {"delivered": False, "attempts": 0, "error": f"invalid callback_url: {exc}"}
    if target.scheme not in ("http", "https"):
        return {"delivered": False, "attempts": 0, "error": "callback_url must be http(s)"}
    last_error, status_code, attempt = "", None, 0
    # An explicit transport: no proxy from HTTP(S)_PROXY, which would resolve the name
    # again itself (SSL_CERT_FILE and the other TLS settings still apply).
    transport = httpx.AsyncHTTPTransport(verify=verify)
    async with httpx.AsyncClient(
        transport=transport, timeout=10.0, follow_redirects=False
    ) as client:
        for attempt in range(1, max(1, attempts) + 1):
            status_code = None
            try:
                addresses = await vetted_addresses(target, allowed)
                response = await _post_pinned(client, target, addresses, body, headers)
            except AddressRefused as exc:
                logger.warning("callback to %s not delivered: %s", url, exc)
                return {"delivered": False, "attempts": attempt, "refused": True, "error": str(exc)}
            except OSError as exc:  # the name did not resolve (maybe only for now)
                last_error = f"cannot resolve {url_host(target)!r}: {exc}"
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                status_code = response.status_code
                if status_code < 300:
                    return {"delivered": True, "attempts": attempt, "status_code": status_code}
                if status_code < 400:
                    location = response.headers.get("location", "")
                    last_error = (
                        f"HTTP {status_code}: the receiver redirects to {location!r};"
                        " callbacks do not follow redirects"
                    )
                    break
                last_error = f"HTTP {status_code}"
                if status_code < 500 and status_code not in (408, 429):
                    break  # the receiver refuses it; retrying will not help
            if attempt < attempts:
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
    logger.warning("callback to %s failed after %d attempt(s): %s", url, attempt, last_error)
    outcome = {"delivered": False, "attempts": attempt, "error": last_error}
    if status_code is not None:
        outcome["status_code"] = status_code
    return outcome
