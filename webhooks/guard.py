"""SSRF guard for tenant webhook URLs: https only (outside dev), and never an internal address."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["UnsafeUrl", "check_url", "forbidden"]

METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class UnsafeUrl(Exception):
    pass


NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
"""NAT64 prefixes (RFC 6052, RFC 8215): the last 32 bits are an IPv4 address."""


def forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Anything but a globally routable address (``is_global``), also when an internal IPv4
    address hides in an IPv6 one: IPv4-mapped, 6to4, Teredo, NAT64."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address | None] = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if any(ip in net for net in NAT64):
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(e is not None and forbidden(e) for e in embedded):
            return True
        if ip.teredo is not None:  # a tunnel endpoint whatever it carries
            return True
    return ip in METADATA or ip.is_multicast or not ip.is_global


async def check_url(url: str, *, allow_internal: bool) -> None:
    """Refuse a URL a CRM must not make us call. ``allow_internal`` is for dev and tests only."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number from 0 to 65535
    except ValueError:  # e.g. "http://[not-an-ipv6"
        raise UnsafeUrl("the URL must be http(s)://host/…") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeUrl("the URL must be http(s)://host/…")
    if parts.scheme != "https" and not allow_internal:
        raise UnsafeUrl("the URL must use https")
    if parts.username or parts.password:
        raise UnsafeUrl("credentials in the URL are not allowed")
    if allow_internal:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port or 443,
                                                             type=socket.SOCK_STREAM)
    except OSError:
        raise UnsafeUrl("the host does not resolve") from None
    for info in infos:
        if forbidden(ipaddress.ip_address(info[4][0])):
            raise UnsafeUrl("the host resolves to an internal address")
