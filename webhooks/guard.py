"""SSRF guard for tenant webhook URLs: https only (outside dev), and never an internal address.

The guard resolves a URL's host name once, checks every address the name resolves to, and hands
the delivery a resolver (``PinnedResolver``) that answers only those checked addresses. The HTTP
client therefore connects to an address that was checked — a DNS answer that changes between the
check and the connection (rebinding) cannot steer it elsewhere — while the URL's host name still
goes out as the TLS SNI and in the ``Host`` header, so certificates are verified as usual.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = [
    "DEVELOPMENT", "STRICT", "Guard", "GuardPolicy", "IPAddress", "PinnedResolver", "Target", "UnsafeUrl", "check_url",
    "forbidden", "policy_for_env",
]

METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(Exception):
    pass


NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
"""NAT64 prefixes (RFC 6052, RFC 8215): the last 32 bits are an IPv4 address."""


def forbidden(ip: IPAddress) -> bool:
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


@dataclass(frozen=True)
class GuardPolicy:
    """What a webhook URL may be. ``allows`` decides each resolved address; None allows every
    address and skips the lookup when an endpoint is registered (development)."""

    https_only: bool
    allows: Callable[[IPAddress], bool] | None


STRICT = GuardPolicy(https_only=True, allows=lambda ip: not forbidden(ip))
"""Production: https, and only globally routable addresses."""
DEVELOPMENT = GuardPolicy(https_only=False, allows=None)
"""``ESIGN_ENV=dev|test``: http too, and any address (a receiver on this machine)."""


def policy_for_env(env: str) -> GuardPolicy:
    return DEVELOPMENT if env in ("dev", "test") else STRICT


@dataclass(frozen=True)
class Target:
    """A URL whose host was resolved once and whose every address passed the policy."""

    url: str
    host: str
    port: int
    addresses: tuple[ResolveResult, ...]

    def resolver(self) -> PinnedResolver:
        return PinnedResolver(self)


class PinnedResolver(AbstractResolver):
    """Answers the checked addresses of one target's host, and nothing for any other name."""

    def __init__(self, target: Target) -> None:
        self.target = target

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        if _name(host) != _name(self.target.host):
            raise OSError(f"{host!r} is not the host that was checked")
        out = [ResolveResult(hostname=host, host=a["host"], port=port, family=a["family"], proto=a["proto"],
                             flags=a["flags"])
               for a in self.target.addresses if family in (socket.AF_UNSPEC, a["family"])]
        if not out:
            raise OSError(f"no checked address of {host!r} in that address family")
        return out

    async def close(self) -> None:
        return None


class Guard:
    """Checks webhook URLs under a policy, resolving names with ``resolver`` (the system's by
    default; tests inject one)."""

    def __init__(self, policy: GuardPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver

    def _parse(self, url: str) -> tuple[str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port  # raises on a port that is not a number from 0 to 65535
        except ValueError:  # e.g. "http://[not-an-ipv6"
            raise UnsafeUrl("the URL must be http(s)://host/…") from None
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise UnsafeUrl("the URL must be http(s)://host/…")
        if parts.scheme != "https" and self.policy.https_only:
            raise UnsafeUrl("the URL must use https")
        if parts.username or parts.password:
            raise UnsafeUrl("credentials in the URL are not allowed")
        return parts.hostname, port or (443 if parts.scheme == "https" else 80)

    async def vet(self, url: str) -> None:
        """The check when an endpoint is registered (development policy: the URL's shape only)."""
        self._parse(url)
        if self.policy.allows is not None:
            await self.target(url)

    async def target(self, url: str) -> Target:
        """Resolve the URL's host once and check every address; raise ``UnsafeUrl`` if one fails."""
        host, port = self._parse(url)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            addresses = [ResolveResult(hostname=host, host=host, port=port, family=family, proto=0,
                                       flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)]
        else:
            if self._resolver is None:
                self._resolver = DefaultResolver()
            try:
                addresses = await self._resolver.resolve(host, port, family=socket.AF_UNSPEC)
            except OSError:
                raise UnsafeUrl("the host does not resolve") from None
            if not addresses:
                raise UnsafeUrl("the host does not resolve")
        allows = self.policy.allows
        if allows is not None:
            for address in addresses:
                try:
                    ip = ipaddress.ip_address(address["host"])
                except ValueError:
                    raise UnsafeUrl("the host resolves to an internal address") from None
                if not allows(ip):
                    raise UnsafeUrl("the host resolves to an internal address")
        return Target(url=url, host=host, port=port, addresses=tuple(addresses))

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()


def _name(host: str) -> str:
    return host.rstrip(".").lower()


async def check_url(url: str, *, allow_internal: bool) -> None:
    """Refuse a URL a CRM must not make us call. ``allow_internal`` is for dev and tests only."""
    guard = Guard(DEVELOPMENT if allow_internal else STRICT)
    try:
        await guard.vet(url)
    finally:
        await guard.close()
