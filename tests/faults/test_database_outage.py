"""PostgreSQL stops for 20 s under traffic, on real processes.

A PostgreSQL cluster of the test's own (``initdb`` into a temporary directory, its own port and
socket directory; never the shared server) serves a real ``python -m esign_gateway serve`` with its
embedded worker, mail to an in-test aiosmtpd server and webhooks to an in-test aiohttp server.
The test sends envelopes over HTTP the whole time, stops PostgreSQL (``pg_ctl stop -m fast``) for
20 s, polls ``/readyz`` throughout, and starts PostgreSQL again without touching the gateway.

What must hold: every request during the outage is a ``503`` RFC 9457 problem with ``Retry-After``
(never a 500, never a hang); ``/readyz`` says 503 within a few seconds during the outage and 200
after it; the gateway's log has exactly one line per failed request and no traceback, and the
worker notes the outage once; and in the end created envelopes (the 201s the client saw) = usage
rows = invitation mails = ``envelope.sent`` webhooks, one each, with no envelope behind a 503.

The outage is real wall-clock time on real processes (the point of the test), so this test waits
for real seconds; the gateway's own clock is not involved.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog.testing
from aiohttp import web
from aiosmtpd.controller import Controller
from tortoise import connections
from tortoise.transactions import in_transaction

from esign_gateway.bootstrap import close_db, init_db
from esign_gateway.config import Settings
from esign_gateway.db.outage import database_unreachable
from tests.conftest import _free_port
from tests.factories import make_pdf

OUTAGE_SECONDS = 20.0
READYZ_BOUND_SECONDS = 4.0
"""How long ``/readyz`` may take to answer while the database is down (its own bound is 2 s)."""


def _pg_bindir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine (Debian/Ubuntu layout, or on PATH)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name.split(".")[0]), reverse=True
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for directory in candidates:
        if all(os.access(Path(directory) / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    return None


PG_BIN = _pg_bindir()

pytestmark = pytest.mark.fault


# ----------------------------------------------------------------------------- our own PostgreSQL


class LocalPostgres:
    """A throw-away cluster. PostgreSQL refuses to run as root: as root, it runs as the ``postgres``
    system user (or ``nobody``) in a directory that user owns."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="esign-pg-"))  # not pytest's tmp_path: root-only (0700)
        self.data = self.root / "data"
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
            assert user, "running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL"
            os.chown(self.root, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            self.prefix = ["runuser", "-u", user, "--"] if shutil.which("runuser") else ["sudo", "-u", user, "--"]
        self.running = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.prefix, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}\n{log[-3000:]}")
        return proc

    def initdb(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--locale=C")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=40")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def postgres() -> Iterator[LocalPostgres]:
    if PG_BIN is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    pg = LocalPostgres(PG_BIN)
    try:
        pg.initdb()
        pg.start()
        yield pg
    finally:
        pg.remove()


# ----------------------------------------------------------------------------- the CRM's side


@dataclass
class Mailbox:
    port: int = field(default_factory=_free_port)
    messages: list[EmailMessage] = field(default_factory=list)
    arrived: list[tuple[float, str]] = field(default_factory=list)
    """(monotonic time, recipient) of each message."""

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.arrived.append((time.monotonic(), msg["To"].addresses[0].addr_spec))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@dataclass
class WebhookReceiver:
    port: int = field(default_factory=_free_port)
    events: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        return web.Response(status=204)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/crm/hook"


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/crm/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    yield receiver
    await runner.cleanup()


# ----------------------------------------------------------------------------- the gateway process


@dataclass
class Gateway:
    base: str
    log_path: Path
    process: subprocess.Popen[bytes]
    tenant_id: str
    api_key: str

    def log_lines(self, start: int = 0, end: int | None = None) -> list[str]:
        raw = self.log_path.read_bytes()
        return raw[start:end].decode(errors="replace").splitlines()

    def log_size(self) -> int:
        return self.log_path.stat().st_size


def _env(data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESIGN_")}
    env.update(
        ESIGN_ENV="test", ESIGN_DATA_DIR=str(data_dir), ESIGN_DATABASE_URL=database_url, ESIGN_LOG_JSON="true",
        ESIGN_SIGNING_WORKERS="1", ESIGN_PDF_INSPECTORS="1", ESIGN_DATABASE_POOL_MAX="5", **extra,
    )
    return env


def _cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "esign_gateway", *args], env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
async def gateway(
    postgres: LocalPostgres, mailbox: Mailbox, tmp_path: Path
) -> AsyncIterator[Gateway]:
    admin = await asyncpg.connect(postgres.url("postgres"))
    await admin.execute('CREATE DATABASE "esign"')
    await admin.close()
    port = _free_port()
    env = _env(tmp_path / "data", postgres.url("esign"), ESIGN_SMTP_URL=f"smtp://127.0.0.1:{mailbox.port}",
               ESIGN_PUBLIC_URL="https://sign.example.test", ESIGN_WORKER_POLL_SECONDS="0.5")
    await asyncio.to_thread(_cli, env, "migrate")
    tenant = json.loads(await asyncio.to_thread(
        _cli, env, "tenant", "create", "--name", "Výpadek s.r.o.", "--paid", "--plan", "custom",
        "--documents", "100000", "--fee", "0", "--json",
    ))
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220  (started once; its output goes to a file)
            [sys.executable, "-m", "esign_gateway", "serve", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    gw = Gateway(f"http://127.0.0.1:{port}", log_path, process, tenant["tenant_id"], tenant["api_key"])
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, "serve exited:\n" + "\n".join(gw.log_lines()[-40:])
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{gw.base}/readyz") as resp:
                        if resp.status == 200:
                            break
                assert time.monotonic() < deadline, "serve never became ready:\n" + "\n".join(gw.log_lines()[-40:])
                await asyncio.sleep(0.2)
        yield gw
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


# ----------------------------------------------------------------------------- traffic


@dataclass
class Sent:
    n: int
    request_id: str
    status: int
    body: Any
    headers: dict[str, str]
    started: float
    ended: float


@dataclass
class Traffic:
    gateway: Gateway
    pdf: str = field(default_factory=lambda: base64.b64encode(make_pdf()).decode())
    sent: list[Sent] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _n: int = 0

    def body(self, n: int) -> dict[str, Any]:
        return {
            "record": {"type": "deal", "id": f"OUTAGE-{n}", "name": f"Zakázka {n}"},
            "name": f"Smlouva {n}",
            "documents": [{"name": "smlouva.pdf", "content": self.pdf}],
            "signers": [{"name": "Jana Nováková", "email": f"signer-{n}@example.cz", "phone": "+420601123456"}],
        }

    async def client(self, session: aiohttp.ClientSession, stop: asyncio.Event, pause: float) -> None:
        auth = {"Authorization": f"Bearer {self.gateway.api_key}"}
        while not stop.is_set():
            self._n += 1
            n = self._n
            rid = f"outage-{n:05d}"
            started = time.monotonic()
            try:
                async with session.post(f"{self.gateway.base}/v1/envelopes", json=self.body(n),
                                        headers={**auth, "X-Request-Id": rid}) as resp:
                    text = await resp.text()
                    body = json.loads(text) if text else None
                    self.sent.append(Sent(n, rid, resp.status, body, dict(resp.headers), started, time.monotonic()))
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.failures.append(f"request {n}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(pause)

    def created(self) -> dict[int, str]:
        return {s.n: s.body["id"] for s in self.sent if s.status == 201}

    def unavailable(self) -> list[Sent]:
        return [s for s in self.sent if s.status == 503]


async def _until(condition: Any, within: float, what: str, state: Any = lambda: "") -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {state()}"
        await asyncio.sleep(0.2)


async def _readyz(session: aiohttp.ClientSession, base: str) -> tuple[int, Any, float]:
    started = time.monotonic()
    async with session.get(f"{base}/readyz") as resp:
        return resp.status, await resp.json(), time.monotonic() - started


def _records(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                out.append(record)
    return out


# ----------------------------------------------------------------------------- the test


async def test_database_outage_answers_503_logs_one_line_per_request_and_loses_nothing(
    postgres: LocalPostgres, gateway: Gateway, mailbox: Mailbox, webhook_receiver: WebhookReceiver
) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        auth = {"Authorization": f"Bearer {gateway.api_key}"}
        async with session.put(f"{gateway.base}/v1/webhook", headers=auth,
                               json={"url": webhook_receiver.url, "events": ["envelope.sent"]}) as resp:
            assert resp.status == 200, await resp.text()

        traffic = Traffic(gateway)
        stop_traffic = asyncio.Event()
        clients = [asyncio.create_task(traffic.client(session, stop_traffic, pause)) for pause in (0.3, 0.45)]

        def state() -> str:
            statuses: dict[int, int] = {}
            for s in traffic.sent:
                statuses[s.status] = statuses.get(s.status, 0) + 1
            odd = [str(s.body)[:300] for s in traffic.sent if s.status not in (201, 503)][:3]
            return (f"responses {statuses}, odd {odd}, failures {traffic.failures[:3]}, mails {len(mailbox.arrived)}, "
                    f"webhooks {len(webhook_receiver.events)}; log tail:\n" + "\n".join(gateway.log_lines()[-15:]))

        try:
            # Before: the whole path works (envelope → mail and webhook).
            await _until(lambda: len(traffic.created()) >= 4 and mailbox.arrived and webhook_receiver.events,
                         60, "envelopes, mails and webhooks before the outage", state)

            # The outage.
            log_start = gateway.log_size()
            await asyncio.to_thread(postgres.stop, "fast")
            stopped_at = time.monotonic()
            during: list[tuple[int, Any, float]] = []
            while time.monotonic() - stopped_at < OUTAGE_SECONDS:  # a real server, down for real seconds
                during.append(await _readyz(session, gateway.base))
                await asyncio.sleep(1.0)  # the poll interval of an operator's probe, not a wait for our timers
            log_end = gateway.log_size()
            await asyncio.to_thread(postgres.start)
            started_at = time.monotonic()

            # After: ready again without a restart, and envelopes are created again.
            after: list[tuple[int, Any, float]] = []
            while not after or after[-1][0] != 200:
                assert time.monotonic() - started_at < 30, f"/readyz not ready 30 s after PostgreSQL returned: {after}"
                after.append(await _readyz(session, gateway.base))
                await asyncio.sleep(0.5)
            time_to_ready = time.monotonic() - started_at
            created_before_recovery = len(traffic.created())
            await _until(lambda: len(traffic.created()) >= created_before_recovery + 3, 60,
                         "envelopes created after the recovery", state)
        finally:
            stop_traffic.set()
            await asyncio.gather(*clients)
        assert gateway.process.poll() is None, "the gateway died"

        created = traffic.created()

        def sent_events() -> dict[str, dict[str, Any]]:
            return {e["id"]: e for e in webhook_receiver.events if e["type"] == "envelope.sent"}

        await _until(lambda: len({to for _, to in mailbox.arrived}) >= len(created), 120,
                     "an invitation per created envelope", state)
        await _until(lambda: len(sent_events()) >= len(created), 120, "an envelope.sent webhook per envelope", state)

    # Every request got an answer: created, or a 503 problem that says when to come back.
    assert traffic.failures == []
    unavailable = traffic.unavailable()
    assert len(unavailable) >= 10, f"the traffic did not meet the outage: {state()}"
    assert {s.status for s in traffic.sent} == {201, 503}, sorted({(s.status, str(s.body)[:200]) for s in traffic.sent
                                                                     if s.status not in (201, 503)})
    for s in unavailable:
        assert s.headers["Content-Type"].startswith("application/problem+json"), s
        assert s.body["status"] == 503 and s.body["code"] == "unavailable", s.body
        assert s.body["type"] == "https://esign-gateway.dev/problems/unavailable", s.body
        assert int(s.headers["Retry-After"]) >= 1, s.headers
        assert s.ended - s.started < 10, f"a request hung for {s.ended - s.started:.1f} s during the outage"

    # /readyz: 503 during the outage (after the first second), quickly; 200 after.
    for status, body, took in during[1:]:
        assert status == 503, (status, body)
        assert took < READYZ_BOUND_SECONDS, f"/readyz took {took:.1f} s during the outage"
        database = next(c for c in body["components"] if c["name"] == "database")
        assert database["ready"] is False, body
    assert after[-1][0] == 200

    # The log during the outage: one line per failed request, nothing more per request, no traceback.
    lines = gateway.log_lines(log_start, log_end)
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines[:60])
    records = _records(lines)
    assert len(records) == len(lines), [line for line in lines if not line.startswith("{")][:20]
    in_window = [s for s in unavailable if s.started >= stopped_at and s.ended <= stopped_at + OUTAGE_SECONDS - 1]
    assert len(in_window) >= 10
    for s in in_window:
        mine = [r for r in records if r.get("request_id") == s.request_id]
        assert len(mine) == 1, (s.request_id, mine)
        assert mine[0]["level"] == "error" and mine[0]["status"] == 503 and mine[0].get("error"), mine[0]
    # Besides the requests, the worker says once that the database is gone, not once per poll.
    # (A loaded machine may have the worker notice only after the window, inside a connect timeout:
    # what counts is one line for the whole outage, and one when it ends.)
    others = [r for r in records if "request_id" not in r and r.get("level") in ("warning", "error", "critical")]
    assert {r["event"] for r in others} <= {"worker_database_unreachable"}, others
    whole = _records(gateway.log_lines(log_start))
    assert not [line for line in gateway.log_lines(log_end) if "Traceback" in line]
    worker_lines = [r["event"] for r in whole if r.get("event", "").startswith("worker_database_")]
    assert worker_lines == ["worker_database_unreachable", "worker_database_back"], worker_lines

    # Nothing lost: created = envelope rows = usage rows = invited signers = envelope.sent events.
    conn = await asyncpg.connect(postgres.url("esign"))
    try:
        rows = await conn.fetch("SELECT id, record_id FROM envelope WHERE tenant_id = $1", gateway.tenant_id)
        usage = await conn.fetch("SELECT envelope_id FROM usage_record WHERE tenant_id = $1", gateway.tenant_id)
    finally:
        await conn.close()
    by_record = {r["record_id"]: r["id"] for r in rows}
    assert by_record == {f"OUTAGE-{n}": eid for n, eid in created.items()}, "an envelope behind a 503, or one lost"
    assert sorted(u["envelope_id"] for u in usage) == sorted(created.values())
    # Every signer invited. Jobs run at least once: an invitation goes out a second time only when
    # the database went away between sending it and recording it, i.e. its first copy arrived just
    # before the stop (the job is given back when the database returns, not lost for its lease).
    invited = [to for _, to in mailbox.arrived]
    assert set(invited) == {f"signer-{n}@example.cz" for n in created}, "an invitation lost"
    for to in {to for to in invited if invited.count(to) > 1}:
        first = min(t for t, who in mailbox.arrived if who == to)
        assert invited.count(to) == 2 and stopped_at - 2 < first < stopped_at + 1, (to, first - stopped_at)
    assert sorted(e["data"]["envelope"]["id"] for e in sent_events().values()) == sorted(created.values())
    print(f"\noutage {OUTAGE_SECONDS:g} s: {len(traffic.sent)} requests, {len(created)} created, "
          f"{len(unavailable)} answered 503; {len(usage)} usage rows, {len(set(invited))} signers invited "
          f"({len(invited)} mails), {len(sent_events())} envelope.sent events; /readyz 503 ×{len(during)} "
          f"(slowest {max(t for _, _, t in during):.2f} s), ready {time_to_ready:.1f} s after PostgreSQL was back; "
          f"{len(lines)} log lines during the outage")


# ----------------------------------------------------------------------------- a transaction that cannot begin


def _terminate_backend_blocking(url: str, pid: int) -> None:
    """Kill one server backend from another thread *while this thread's event loop stands still*, so
    the gateway's side cannot notice the closed socket before its next statement."""

    async def terminate() -> None:
        admin = await asyncpg.connect(url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        finally:
            await admin.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, terminate()).result(timeout=30)


async def test_a_transaction_whose_connection_died_before_begin_leaves_the_task_and_the_pool_usable(
    postgres: LocalPostgres, tmp_path: Path
) -> None:
    """A long-lived task (the worker's poll loop) whose ``BEGIN`` met a connection the server had
    just closed: the error is "database unreachable", and the task's next transaction works —
    it is not stuck on the dead connection, and the pool has not lost a connection."""
    admin = await asyncpg.connect(postgres.url("postgres"))
    await admin.execute('CREATE DATABASE "esign"')
    await admin.close()
    await init_db(Settings(env="test", data_dir=tmp_path, database_url=postgres.url("esign"), database_pool_max=2))
    try:
        client = connections.get("default")
        for _ in range(3):
            async with in_transaction("default") as conn:
                pid = (await conn.execute_query_dict("SELECT pg_backend_pid() AS pid"))[0]["pid"]
            _terminate_backend_blocking(postgres.url("postgres"), pid)
            with pytest.raises(Exception) as failed:  # which class: the next line
                async with in_transaction("default") as conn:
                    await conn.execute_query("SELECT 1")
            assert database_unreachable(failed.value), repr(failed.value)
            async with in_transaction("default") as conn:  # the same task, at once
                assert (await conn.execute_query_dict("SELECT 41 + 1 AS v"))[0]["v"] == 42
        # Every connection of the pool is still there to take, twice over at the same time.
        async def hold() -> None:
            async with in_transaction("default") as conn:
                await conn.execute_query("SELECT pg_sleep(0.05)")
        await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(4))), 10)
        assert client._pool.get_max_size() == 2
    finally:
        await close_db()


# ----------------------------------------------------------------------------- SQLite held by another process


@pytest.fixture
def settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    """SQLite that waits 300 ms for a write lock (``busy_timeout``) instead of 30 s."""
    target = tmp_path / "esign.sqlite3"
    shutil.copy(sqlite_template, target)
    return Settings(env="test", data_dir=tmp_path / "data", database_url=f"sqlite://{target}?busy_timeout=300",
                    public_url="https://sign.example.test", embedded_worker=False, log_json=False)


async def test_sqlite_locked_by_another_process_past_its_timeout_is_503_unavailable_in_one_log_line(
    api: Any, tenant: Any, settings: Settings
) -> None:
    path = settings.resolved_database_url.removeprefix("sqlite://").split("?")[0]
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer, holding the lock
    other.execute("BEGIN IMMEDIATE")
    try:
        with structlog.testing.capture_logs() as logs:
            resp = await api.get("/v1/envelopes", headers={**tenant.auth, "X-Request-Id": "locked-1"})
            body = await resp.json()
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert resp.status == 503, body
    assert body["type"] == "https://esign-gateway.dev/problems/unavailable" and body["status"] == 503
    assert int(resp.headers["Retry-After"]) >= 1
    assert [(e["event"], e["log_level"], e["error"]) for e in logs] == [("request", "error", "OperationalError")]
    assert "exc_info" not in logs[0] and "exception" not in logs[0]
    resp = await api.get("/v1/envelopes", headers=tenant.auth)  # the lock is gone: served again
    assert resp.status == 200, await resp.text()
