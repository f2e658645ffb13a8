"""Completion callbacks: POST the final job state to `config.callback_url`.

Signed like the webhooks of commercial conversion APIs: when the operator sets
a callback secret, the request carries `X-Pixyz-Signature: sha256=<hex>`, the
HMAC-SHA256 of the exact body bytes under that secret. Receivers recompute it
and compare in constant time. Delivery is retried with exponential backoff.

Callbacks go to public addresses only, unless the operator lists a network in
`PIXYZ_CALLBACK_ALLOWED_NETWORKS`: a `submit` key must not be able to make the
service POST to cloud metadata, localhost or the internal network (SSRF).
Two checks, one rule (`address_refusal`):

- at submit (`literal_refusal`), a host written as an IP address, in any form
  the resolver accepts (`127.1`, `2130706433`, `0x7f000001`, `[::ffff:127.0.0.1]`),
  is checked at once and refused with a 400. Hostnames are not resolved there:
  what a name resolves to at submit says nothing about what it resolves to when
  the job ends, maybe hours later, from another node (the JobStore's).
- at delivery (`deliver`), the host is resolved once per attempt, every address
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
import ipaddress
import json
import logging
import re
import socket
import ssl
from collections.abc import Iterable
from urllib.parse import unquote

import httpx

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pixyz-Signature"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
}
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
# What the C resolver reads as an IPv4 address besides dotted quads: 127.1, 0x7f.1,
# 017700000001, 2130706433 (inet_aton's forms; getaddrinfo accepts the same).
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")
ONLY_PUBLIC = (
    "Callbacks go only to public addresses and to networks the operator lists"
    " in PIXYZ_CALLBACK_ALLOWED_NETWORKS"
)


class CallbackRefused(Exception):
    """The callback URL leads to an address callbacks may not reach."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header_value: str) -> bool:
    """What a receiver runs: True when `header_value` is the signature of `body`."""
    return hmac.compare_digest(sign(body, secret), header_value or "")


# -- which addresses a callback may reach -------------------------------------------


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings → networks; ValueError naming the first one that is not a network."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=True))
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a CIDR network such as '10.0.0.0/8' or 'fd00::/8' ({exc})"
            ) from None
    return tuple(networks)


def _special_kind(ip: IPAddress) -> str | None:
    """What makes `ip` non-public ('loopback', 'private', ...), or None for a public address."""
    if ip in METADATA_ADDRESSES:
        return "cloud metadata service"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if any(ip in network for network in PRIVATE_NETWORKS):
        return "private"
    if ip.version == 6 and ip.is_site_local:
        return "site-local"
    if ip.is_reserved or ip.is_private or not ip.is_global:
        return "reserved or special-purpose (not publicly routable)"
    return None


def address_refusal(ip: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why a callback may not connect to `ip`, or None when it may.

    Public addresses may be reached, and any address inside an `allowed` network.
    An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is judged as the IPv4 address
    it reaches; a 6to4 address (`2002:7f00:1::`) must pass as itself and as the
    IPv4 address it embeds.
    """
    allowed = tuple(allowed)
    views = [(ip, str(ip))]
    if ip.version == 6 and ip.ipv4_mapped:
        views = [(ip.ipv4_mapped, f"{ip} (IPv4-mapped {ip.ipv4_mapped})")]
    elif ip.version == 6 and ip.sixtofour:
        views.append((ip.sixtofour, f"{ip} (6to4 for {ip.sixtofour})"))
    for view, shown in views:
        if any(view in network for network in allowed):
            continue
        kind = _special_kind(view)
        if kind:
            article = "an" if kind[0] in "aeiou" else "a"
            return f"{shown} is {article} {kind} address"
    return None


def literal_ip(host: str) -> IPAddress | None:
    """The address a URL host names without DNS (`127.0.0.1`, `::1`, `127.1`, `2130706433`), or None."""
    host = unquote(host).strip("[]")
    if host.endswith("."):
        host = host[:-1]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _url_host(url: httpx.URL) -> str:
    """The host as the resolver sees it (IDNA-encoded, no brackets)."""
    return url.raw_host.decode("ascii")


def literal_refusal(url: str, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Submit-time check: why `url` may not be a callback, judged without DNS (None: it may,
    so far; a hostname is checked when the callback is delivered). httpx.InvalidURL when
    httpx cannot parse `url` (the same parser that delivery uses)."""
    ip = literal_ip(_url_host(httpx.URL(url)))
    return None if ip is None else address_refusal(ip, allowed)


async def vetted_addresses(url: httpx.URL, allowed: Iterable[IPNetwork] = ()) -> list[IPAddress]:
    """Resolve the URL's host; CallbackRefused when any address it resolves to is refused.

    OSError (socket.gaierror) when the name does not resolve. The resolution runs in
    the event loop's executor, so a slow DNS server does not block the loop.
    """
    allowed = tuple(allowed)
    host = _url_host(url)
    literal = literal_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, url.port, type=socket.SOCK_STREAM
        )
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    refused = [reason for ip in addresses if (reason := address_refusal(ip, allowed))]
    if refused:
        resolved = ", ".join(map(str, addresses))
        named = "" if literal is not None else f"'{host}' resolves to {resolved}: "
        raise CallbackRefused(f"{named}{'; '.join(refused)}. {ONLY_PUBLIC}")
    return addresses


async def _post_pinned(
    client: httpx.AsyncClient,
    url: httpx.URL,
    addresses: list[IPAddress],
    body: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    """POST to `url` over a connection to one of `addresses` (the next one when one refuses)."""
    host = _url_host(url)
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
            except CallbackRefused as exc:
                logger.warning("callback to %s not delivered: %s", url, exc)
                return {"delivered": False, "attempts": attempt, "refused": True, "error": str(exc)}
            except OSError as exc:  # the name did not resolve (maybe only for now)
                last_error = f"cannot resolve {_url_host(target)!r}: {exc}"
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
