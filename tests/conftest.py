"""Shared fixtures: a migrated database (SQLite always, PostgreSQL when ESIGN_TEST_DATABASE_URL
is set), a real SMTP server, the real signing provider and PDF inspector, the app over HTTP.

Database tests run once per backend: the ``db_url`` fixture is parametrised. PostgreSQL tests
each get their own database cloned from a migrated template; SQLite tests a copy of a migrated
file.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from tortoise.backends.base.executor import EXECUTOR_CACHE

from esign_gateway.bootstrap import build_container, close_db, init_db, migrate
from esign_gateway.config import Settings
from esign_gateway.container import Container
from tests.fakes import FrozenClock

PG_URL = os.environ.get("ESIGN_TEST_DATABASE_URL")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sqlite-template")
    settings = Settings(data_dir=directory, env="test")
    asyncio.run(migrate(settings))
    return directory / "esign.sqlite3"


def _pg_admin_url() -> str:
    assert PG_URL is not None
    return PG_URL.replace("postgres://", "postgresql://", 1)


def _pg_url_for(db: str) -> str:
    assert PG_URL is not None
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{db}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"esign_tmpl_{uuid.uuid4().hex[:8]}"

    async def setup() -> None:
        conn = await asyncpg.connect(_pg_admin_url())
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        await migrate(Settings(database_url=_pg_url_for(name), env="test", data_dir=Path("/tmp")))

    async def teardown() -> None:
        conn = await asyncpg.connect(_pg_admin_url())
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(setup())
    yield name
    asyncio.run(teardown())


BACKENDS = ("sqlite", "postgres") if PG_URL else ("sqlite",)
"""Database tests run on every backend configured here: SQLite always, PostgreSQL when
``ESIGN_TEST_DATABASE_URL`` is set (``.ci/run`` sets it). Nothing is skipped: a backend that is not
configured is not part of the run."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs PostgreSQL (ESIGN_TEST_DATABASE_URL)")
    config.addinivalue_line("markers", "fault: kills or stops real processes (tests/faults/)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without PostgreSQL, the PostgreSQL-only tests are deselected (reported), not skipped."""
    if PG_URL:
        return
    dropped = [i for i in items if i.get_closest_marker("postgres")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if not i.get_closest_marker("postgres")]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "esign.sqlite3"
        shutil.copy(template, target)
        yield f"sqlite://{target}"
        return
    if not PG_URL:  # only a test marked "postgres" asks for it, and those are deselected without PG
        raise RuntimeError("a PostgreSQL test ran without ESIGN_TEST_DATABASE_URL; mark it 'postgres'")
    template = request.getfixturevalue("pg_template")
    name = f"esign_t_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        conn = await asyncpg.connect(_pg_admin_url())
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(_pg_admin_url())
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(create())
    yield _pg_url_for(name)
    asyncio.run(drop())


# ----------------------------------------------------------------------------- SMTP


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


class _Collector:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.server.messages.append(msg)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer("127.0.0.1", _free_port())
    controller = Controller(_Collector(server), hostname=server.host, port=server.port)
    controller.start()
    yield server
    controller.stop()


# ----------------------------------------------------------------------------- real signing parts


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


@pytest.fixture(scope="session")
def shared_parts(pki_dir: Path) -> Iterator[dict[str, Any]]:
    """One signing process pool and one PDF-parsing pool for the whole session (they are slow to start)."""
    from adapters.pdf.inspector import ProcessPdfInspector
    from esign_gateway.bootstrap import _signing_material

    settings = Settings(data_dir=pki_dir.parent / "session-data", env="test")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    material, _ = _signing_material(settings)
    from adapters.providers.local.provider import LocalProvider

    provider = LocalProvider(material, max_workers=2)
    inspector = ProcessPdfInspector(memory_limit_bytes=768 * 1024 * 1024, timeout_seconds=20)
    asyncio.run(provider.start())
    asyncio.run(inspector.start())
    yield {"provider": provider, "inspector": inspector, "material": material, "settings": settings}
    asyncio.run(provider.close())
    asyncio.run(inspector.close())


class _Shared:
    """Wraps a session-wide part so that an app's start/close do not stop it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


# ----------------------------------------------------------------------------- the fake DigiSign


@pytest.fixture
async def fake_digisign(clock: FrozenClock) -> AsyncIterator[Any]:
    """The fake DigiSign API on a real local port, on the test's clock (tokens, webhook times)."""
    from tests.fakes.digisign import FakeDigiSign

    fake = FakeDigiSign(clock=clock.now)
    await fake.start()
    yield fake
    await fake.close()


# ----------------------------------------------------------------------------- the app


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        env="test", data_dir=tmp_path / "data", database_url=db_url, public_url="https://sign.example.test",
        embedded_worker=False, log_json=False,
    )


@pytest.fixture
async def container(
    settings: Settings, clock: FrozenClock, smtp_server: SmtpServer, shared_parts: dict[str, Any]
) -> AsyncIterator[Container]:
    from adapters.email.smtp import SmtpEmailSender

    c = build_container(
        settings,
        clock=clock,
        email=SmtpEmailSender.from_url(smtp_server.url, sender="esign <noreply@example.test>"),
        providers={"local": _Shared(shared_parts["provider"])},
        inspector=_Shared(shared_parts["inspector"]),
    )
    # tortoise caches compiled INSERTs per connection *name*: tests alternate SQLite and PostgreSQL
    # under the same name "default", so start each test with an empty cache.
    EXECUTOR_CACHE.clear()
    await init_db(settings)
    yield c
    await close_db()


@dataclass
class Tenant:
    id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], container: Container) -> Any:
    """The real app on a real local port (pytest-aiohttp)."""
    from esign_gateway.http.app import create_app

    return await aiohttp_client(create_app(container))


@pytest.fixture
async def tenant(container: Container) -> Tenant:
    """A paid tenant on plan L (150 documents a month): tests of other rules never meet the allowance."""
    info, key = await container.tenants.create_tenant("Dodavatel s.r.o.", paid=True, plan_code="l")
    return Tenant(info.id, key.secret)
