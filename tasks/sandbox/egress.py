"""Which network addresses the service may send requests to on a user's behalf (SSRF).

A user-supplied URL (today: `config.callback_url`) may lead to public addresses,
and to the networks the operator lists (`PIXYZ_CALLBACK_ALLOWED_NETWORKS`); never
to loopback, private, link-local, cloud-metadata, multicast or reserved ones.
Two checks, one rule (`address_refusal`):

- `literal_refusal` (at submit): a host written as an IP address, in any form
  the resolver accepts (`127.1`, `2130706433`, `0x7f000001`, `[::ffff:127.0.0.1]`),
  is judged at once, without DNS.
- `vetted_addresses` (at delivery): the host is resolved, and every address it
  resolves to must pass; the caller then connects to one of those addresses, so
  a second, rebound resolution never happens.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import unquote

import httpx

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


class AddressRefused(Exception):
    """The URL leads to an address the service may not reach."""


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


def url_host(url: httpx.URL) -> str:
    """The host as the resolver sees it (IDNA-encoded, no brackets)."""
    return url.raw_host.decode("ascii")


def literal_refusal(url: str, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Submit-time check: why `url` may not be a callback, judged without DNS (None: it may,
    so far; a hostname is checked when the callback is delivered). httpx.InvalidURL when
    httpx cannot parse `url` (the same parser that delivery uses)."""
    ip = literal_ip(url_host(httpx.URL(url)))
    return None if ip is None else address_refusal(ip, allowed)


async def vetted_addresses(url: httpx.URL, allowed: Iterable[IPNetwork] = ()) -> list[IPAddress]:
    """Resolve the URL's host; AddressRefused when any address it resolves to is refused.

    OSError (socket.gaierror) when the name does not resolve. The resolution runs in
    the event loop's executor, so a slow DNS server does not block the loop.
    """
    allowed = tuple(allowed)
    host = url_host(url)
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
        raise AddressRefused(f"{named}{'; '.join(refused)}. {ONLY_PUBLIC}")
    return addresses
