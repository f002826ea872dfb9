"""Real pieces for webhook delivery tests: a resolver whose answers change (DNS rebinding), HTTP(S)
receivers bound to chosen loopback addresses, and a throw-away CA with a server certificate."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhooks.guard import GuardPolicy, IPAddress, forbidden

STAND_IN = ipaddress.ip_address("127.0.0.2")
"""Stands for a public address in these tests: traffic must stay on this machine, so the test policy
treats this loopback address as globally routable and every other address as production does."""


def stand_in_policy(*, https_only: bool = False) -> GuardPolicy:
    def allows(ip: IPAddress) -> bool:
        return ip == STAND_IN or not forbidden(ip)

    return GuardPolicy(https_only=https_only, allows=allows)


class ScriptedResolver(AbstractResolver):
    """Answers each lookup with the next of ``answers`` (the last one repeats), like a DNS server
    that changes its answer with a short TTL; ``lookups`` records every name asked."""

    def __init__(self, *answers: str | tuple[str, ...]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answer = self.answers[min(len(self.lookups), len(self.answers) - 1)]
        self.lookups.append(host)
        addresses = (answer,) if isinstance(answer, str) else answer
        return [ResolveResult(hostname=host, host=a, port=port,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET, proto=0,
                              flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV) for a in addresses]

    async def close(self) -> None:
        return None


@dataclass
class Seen:
    method: str
    path: str
    host: str | None
    body: bytes


@dataclass
class Listener:
    """An HTTP(S) server on one address and port that records every request and answers ``status``."""

    address: str
    port: int = 0
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> Listener:
        async def handle(request: web.Request) -> web.Response:
            self.requests.append(Seen(request.method, request.path, request.headers.get("Host"), await request.read()))
            return web.Response(status=self.status, headers=self.headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.address, self.port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def make_tls(directory: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext, list[str | None]]:
    """A CA of its own and a certificate for ``name`` signed by it. Returns the server's context
    (recording the SNI names clients send), a client context that trusts only that CA, and the list
    of recorded SNI names."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
          .not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    names: list[str | None] = []
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)

    def record(_sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(server_name)

    server.sni_callback = record  # type: ignore[assignment]
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client, names
