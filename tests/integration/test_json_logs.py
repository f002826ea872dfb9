"""With ``ESIGN_LOG_JSON=true`` every line a gateway process writes is one JSON object.

Real processes throughout. The first test runs ``python -m esign_gateway serve`` (development
outbox, signing and inspector workers, the embedded job worker) against a real RFC 3161 TSA served
from the test (the development PKI's TSA key, on a local port), drives a whole ceremony over HTTP
and the failures an operator meets — a 404, a 422, a request with a bare LF, a wrong SMS code, a
``502`` made by killing the signing worker twice while it waits for the TSA — and reads everything
the process wrote on stdout and stderr: every line must parse as JSON (pyHanko's own warning from
the signing worker among them: the document's ``startxref`` shares a line with its offset), each
request line must say who, what and how long, a ``5xx`` must name its cause once, and no line may
hold the API key, the SMS code, the link token, the e-mail address or the phone number.

The second test runs a worker of a real :class:`RebuildingPool` that writes through the standard
library, ``warnings`` and structlog, and reads the worker's own stdout/stderr (file descriptors).

The serve test waits for real processes (start-up, the job worker's mail), never for a clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters._pool import RebuildingPool
from adapters.providers.local.dev_pki import ensure_dev_pki
from adapters.providers.local.tsa import DevTimeStamper, tsa_routes
from esign_gateway.logging import configure_logging
from tests.conftest import _free_port
from tests.factories import make_pdf

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "jana.novakova@example.cz"
PHONE = "+420601123456"


class HoldingTsa:
    """The development TSA over HTTP; while ``holding``, each request waits until released (a
    signing worker blocked on the TSA, to be killed there)."""

    def __init__(self, pki_dir: Path) -> None:
        pki = ensure_dev_pki(pki_dir)  # the gateway finds it there and signs with it
        self.stamper = DevTimeStamper.from_files(pki.tsa_cert_path, pki.tsa_key_path)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/tsa"
        self.holding = False
        self.arrived: asyncio.Queue[None] = asyncio.Queue()
        self.release = asyncio.Event()
        self._server: TestServer | None = None

    async def start(self) -> None:
        @web.middleware
        async def hold(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
            if self.holding:
                self.arrived.put_nowait(None)
                await self.release.wait()
            return await handler(request)

        app = web.Application(middlewares=[hold])
        app.router.add_routes(tsa_routes(self.stamper))
        self._server = TestServer(app, host="127.0.0.1", port=self.port)
        await self._server.start_server()

    async def close(self) -> None:
        self.release.set()
        if self._server is not None:
            await self._server.close()


@dataclass
class Serve:
    base: str
    data: Path
    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    api_key: str
    tenant_id: str
    sent: list[tuple[str, str, int]] = field(default_factory=list)
    """(request id, what, status) of every request the test made."""

    def lines(self) -> list[str]:
        return [line for path in (self.out, self.err) for line in path.read_text(errors="replace").splitlines()
                if line.strip()]

    def children(self, comm: str) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid and \
                        (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
        return found


def _cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "esign_gateway", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
async def tsa(tmp_path: Path) -> AsyncIterator[HoldingTsa]:
    server = HoldingTsa(tmp_path / "data" / "pki")
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def serve(tmp_path: Path, tsa: HoldingTsa) -> AsyncIterator[Serve]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESIGN_")}
    env.update(ESIGN_ENV="dev", ESIGN_DATA_DIR=str(tmp_path / "data"), ESIGN_LOG_JSON="true",
               ESIGN_PUBLIC_URL=base, ESIGN_TSA_URL=tsa.url, ESIGN_SIGNING_WORKERS="1", ESIGN_PDF_INSPECTORS="1",
               ESIGN_WORKER_POLL_SECONDS="0.2")
    await asyncio.to_thread(_cli, env, "migrate")
    created = await asyncio.to_thread(_cli, env, "tenant", "create", "--name", "Logy s.r.o.", "--paid", "--plan",
                                      "custom", "--documents", "100", "--fee", "0", "--json")
    tenant = next(json.loads(line) for line in created.splitlines() if '"api_key"' in line)
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: ASYNC220  (started once; its output goes to files)
            [sys.executable, "-m", "esign_gateway", "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=stdout, stderr=stderr,
        )
    gw = Serve(base, tmp_path / "data", process, out, err, tenant["api_key"], tenant["tenant_id"])
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, "serve exited:\n" + "\n".join(gw.lines()[-40:])
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                assert time.monotonic() < deadline, "serve never became ready:\n" + "\n".join(gw.lines()[-40:])
                await asyncio.sleep(0.2)
        yield gw
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


def _files(path: Path, pattern: str) -> list[Path]:
    return sorted(path.glob(pattern)) if path.exists() else []


async def _arrives(path: Path, pattern: str, within: float = 60) -> Path:
    """The newest file in ``path`` whose name matches (the job worker writes it)."""
    deadline = time.monotonic() + within
    while True:
        found = await asyncio.to_thread(_files, path, pattern)
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"nothing arrived in {path}"
        await asyncio.sleep(0.1)


def _plain(raw: bytes) -> str:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def test_a_whole_ceremony_and_its_failures_leave_only_json_lines(serve: Serve, tsa: HoldingTsa) -> None:
    auth = {"Authorization": f"Bearer {serve.api_key}"}
    n = 0

    async def call(session: aiohttp.ClientSession, method: str, path: str, what: str, **kw: Any) -> tuple[int, Any]:
        nonlocal n
        n += 1
        rid = f"logs-{n:03d}-{what}"
        async with session.request(method, serve.base + path, headers={**kw.pop("headers", {}), "X-Request-Id": rid},
                                   **kw) as resp:
            text = await resp.text()
            serve.sent.append((rid, what, resp.status))
            return resp.status, json.loads(text) if text and resp.content_type.endswith("json") else text

    # startxref on the offset's line: accepted as it is, and pyHanko warns about it when it signs
    pdf = make_pdf().replace(b"startxref\n", b"startxref ")
    body = {"record": {"type": "deal", "id": "LOGS-1"}, "name": "Smlouva o dílo 2026/042",
            "documents": [{"name": "smlouva.pdf", "content": base64.b64encode(pdf).decode()}],
            "signers": [{"name": "Jana Nováková", "email": EMAIL, "phone": PHONE}]}
    async with aiohttp.ClientSession() as session:
        status, _ = await call(session, "GET", "/v1/envelopes/01a206aa-bcdb-750e-bbc5-e812ca10e709", "api-404",
                               headers=auth)
        assert status == 404
        status, _ = await call(session, "POST", "/v1/envelopes", "api-422", headers=auth, json={"name": ""})
        assert status == 422
        status, _ = await call(session, "GET", "/no/such/page", "404")
        assert status == 404
        status, env = await call(session, "POST", "/v1/envelopes", "api-create", headers=auth, json=body)
        assert status == 201, env
        envelope_id = env["id"]

        invitation = _plain((await _arrives(serve.data / "outbox" / "email", "*.eml")).read_bytes())
        token = re.search(r"/sign/([A-Za-z0-9_\-]{16,})", invitation)
        assert token is not None, invitation
        link = token.group(1)
        status, _ = await call(session, "GET", f"/api/sign/{link}", "sign-view")
        assert status == 200
        status, _ = await call(session, "POST", f"/api/sign/{link}/code", "sign-code", json={})
        assert status == 202
        sms = json.loads((await _arrives(serve.data / "outbox" / "sms", "*.json")).read_text())
        code = re.search(r"\b(\d{6})\b", sms["text"])
        assert code is not None, sms
        wrong = "000000" if code.group(1) != "000000" else "111111"
        status, _ = await call(session, "POST", f"/api/sign/{link}/sign", "sign-wrong-code",
                               json={"code": wrong, "agree": True})
        assert status == 422

        # a 502: the signing worker dies while it waits for the TSA, and its replacement does too
        tsa.holding = True
        signing = asyncio.ensure_future(call(session, "POST", f"/api/sign/{link}/sign", "sign-502",
                                             json={"code": code.group(1), "agree": True}))
        for _ in range(2):
            await asyncio.wait_for(tsa.arrived.get(), 90)
            workers = serve.children("esign-sign")
            assert workers, "no signing worker"
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
        status, problem = await asyncio.wait_for(signing, 90)
        assert status == 502 and problem["code"] == "provider_error", problem
        tsa.holding = False
        tsa.release.set()

        status, signed = await call(session, "POST", f"/api/sign/{link}/sign", "sign-ok",
                                    json={"code": code.group(1), "agree": True})
        assert status == 200 and signed["envelope_status"] == "completed", signed
        status, env = await call(session, "GET", f"/v1/envelopes/{envelope_id}", "api-get", headers=auth)
        assert status == 200 and env["status"] == "completed"

    # the same key in a request aiohttp cannot parse (a bare LF ends a header line)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(serve.base.rsplit(":", 1)[1]))
    writer.write(b"GET /v1/envelopes HTTP/1.1\nHost: x\nAuthorization: Bearer " + serve.api_key.encode()
                 + b"\x01\r\n\r\n")
    await writer.drain()
    assert (await reader.read(100)).startswith(b"HTTP/1.0 400")
    writer.close()

    serve.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(serve.process.wait, 30)

    lines = serve.lines()
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        assert isinstance(record, dict), f"not a JSON line: {line!r}"
        records.append(record)
    assert all({"event", "level", "timestamp"} <= set(r) for r in records), [r for r in records if "level" not in r]

    # what the workers and libraries said is among them, as JSON
    assert any(r.get("logger", "").startswith("pyhanko") and "startxref" in r["event"] for r in records), \
        [r for r in records if r.get("logger") not in ("esign_gateway.http",)]
    assert any(r["event"] == "http_request_malformed" for r in records)

    requests = [r for r in records if r["event"] == "request"]
    for rid, what, status in serve.sent:
        mine = [r for r in requests if r.get("request_id") == rid]
        assert len(mine) == 1, (rid, mine)
        line = mine[0]
        assert line["status"] == status and line["method"] in ("GET", "POST") and line["route"], line
        assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0, line
        if what.startswith("api-"):
            assert line["tenant_id"] == serve.tenant_id, line
        if what in ("api-create", "api-get") or what.startswith("sign-"):
            assert line["envelope_id"] == envelope_id, line
        if what == "api-404":
            assert line["envelope_id"] == "01a206aa-bcdb-750e-bbc5-e812ca10e709", line

    # the 502 names its cause once: on its request line, the class of what failed and why
    rid_502 = next(rid for rid, what, _ in serve.sent if what == "sign-502")
    failed = [r for r in records if r.get("request_id") == rid_502 and ("cause" in r or "error" in r)]
    assert len(failed) == 1 and failed[0]["event"] == "request", failed
    assert failed[0]["level"] == "error" and failed[0]["error"] == "BrokenProcessPool", failed[0]
    assert "signing workers died" in failed[0]["cause"], failed[0]
    assert not [r for r in records if r.get("level") == "error" and "Traceback" in str(r.get("exception"))]

    everything = "\n".join(lines)
    for secret in (serve.api_key, serve.api_key[-16:], link, EMAIL, PHONE, PHONE[4:]):
        assert secret not in everything, secret
    assert not re.search(rf"(?<![\d.]){code.group(1)}(?!\d)", everything)


def _noisy() -> int:
    """In a pool worker: what libraries write there."""
    logging.getLogger("pyhanko.pdf_utils.reader").warning("startxref on same line as offset")
    warnings.warn("a library's warning about /sign/" + "A" * 43, UserWarning, stacklevel=1)
    structlog.get_logger("adapters.worker").info("worker_event", token="abc", content=b"%PDF")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    sys.stdout.flush()
    return os.getpid()


async def test_a_pool_worker_writes_json_lines_only(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    pool = RebuildingPool("test_pool", process_name="esign-test", max_workers=1)
    try:
        pid = await pool.run(_noisy)
    finally:
        await pool.close()
    out, err = capfd.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # a plain line fails here
    mine = [r for r in records if r.get("process") == "esign-test"]
    assert {r["event"].split(" ")[0] for r in mine} >= {"startxref", "worker_event", "Task"}, records
    warned = [r for r in mine if r.get("logger") == "py.warnings"]
    assert len(warned) == 1 and "UserWarning" in warned[0]["event"] and "AAAA" not in warned[0]["event"]
    event = next(r for r in mine if r["event"] == "worker_event")
    assert event["token"] == event["content"] == "[redacted]"
    crashed = next(r for r in mine if r["event"].startswith("Task"))
    assert crashed["level"] == "error" and "RuntimeError: boom" in crashed["exception"]
    assert pid != os.getpid()
