"""SSRF guard for tenant webhook URLs: https only (outside dev), and never an internal address."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["UnsafeUrl", "check_url"]

METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class UnsafeUrl(Exception):
    pass


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip in METADATA or ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified
    )


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
        if _forbidden(ipaddress.ip_address(info[4][0])):
            raise UnsafeUrl("the host resolves to an internal address")
