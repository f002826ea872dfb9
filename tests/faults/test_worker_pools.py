"""The signing and report pools outlive their workers, and no worker outlives the gateway.

Real processes throughout: a ``kill -9`` of a live worker, a real signature afterwards, a real
``serve`` process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature

from adapters.providers.local import pades
from adapters.providers.local.provider import LocalProvider
from adapters.reports.audit_pdf import PdfReportRenderer
from esign_gateway.bootstrap import REPORT_FONT
from esign_gateway.errors import ProviderError
from esign_gateway.ports import AuditReport, SignatureRequest
from tests.factories import make_pdf
from tests.pdf_tools import pdfsig

pytestmark = pytest.mark.fault


def _request(pdf: bytes) -> SignatureRequest:
    return SignatureRequest(
        pdf=pdf, envelope_id="env_pool", document_id="doc", signer_id="s1", signer_name="Jana Nováková",
        signer_email="jana@example.cz", field_name="Signature-s1", slot=1,
        verification="e-mail link + SMS code to +420 *** *** 456", language="cs",
    )


def _kill(pids: list[int]) -> None:
    assert pids, "no worker process to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1].startswith("Z")  # a zombie waits only for its reaper
    except FileNotFoundError:
        return True


def _wait_until_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    """The pids still running after ``seconds`` (polls /proc; a process's exit, not a timer, ends the wait)."""
    deadline = time.monotonic() + seconds
    while (alive := [p for p in pids if not _gone(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.fixture
async def provider(shared_parts: dict[str, Any], tmp_path: Path) -> AsyncIterator[LocalProvider]:
    """A pool of its own (the session's shared pool must not be broken), with the key in a file the
    test may take away."""
    material: pades.SigningMaterial = shared_parts["material"]
    assert material.key_pem_path is not None
    key = tmp_path / "signer.key"
    shutil.copy(material.key_pem_path, key)
    from dataclasses import replace

    p = LocalProvider(replace(material, key_pem_path=key), max_workers=1)
    await p.start()
    yield p
    await p.close()


async def test_signature_in_flight_when_its_worker_is_killed_is_made_by_a_fresh_worker(
    provider: LocalProvider, shared_parts: dict[str, Any]
) -> None:
    pdf = make_pdf(pages=30)
    await provider.sign(_request(pdf))  # the worker is up and warm
    before = provider.pool.pids
    task = asyncio.create_task(provider.sign(_request(pdf)))
    await asyncio.sleep(0)  # one step: the task has handed the document to the pool (not a wait for time)
    _kill(before)
    signed = await task
    status = await async_validate_pdf_signature(PdfFileReader(io.BytesIO(signed.pdf)).embedded_signatures[0])
    assert status.intact and status.valid  # the dev root is not trusted here: integrity and the math
    assert [s.valid for s in pdfsig(signed.pdf)] == [True]
    assert provider.pool.rebuilt == 1 and not set(provider.pool.pids) & set(before)
    assert (await provider.health()).ready
    await provider.sign(_request(pdf))  # and the one after


async def test_readyz_component_says_when_the_signing_pool_cannot_be_rebuilt_and_heals(
    provider: LocalProvider, shared_parts: dict[str, Any]
) -> None:
    pdf = make_pdf()
    await provider.sign(_request(pdf))
    key = provider.material.key_pem_path
    assert key is not None
    saved = key.read_bytes()
    key.unlink()  # a fresh worker cannot load the key any more
    _kill(provider.pool.pids)
    with pytest.raises(ProviderError, match="died twice"):
        await provider.sign(_request(pdf))
    health = await provider.health()
    assert health.name == "signing_pool" and not health.ready and "died twice" in health.detail
    key.write_bytes(saved)
    await provider.pool.probe()
    assert (await provider.health()).ready
    await provider.sign(_request(pdf))


async def test_report_in_flight_when_its_worker_is_killed_is_rendered_by_a_fresh_worker() -> None:
    from datetime import UTC, datetime

    renderer = PdfReportRenderer(REPORT_FONT)
    when = datetime(2026, 12, 1, tzinfo=UTC)
    report = AuditReport(
        language="cs", envelope_id="env_pool", envelope_name="Smlouva", status="completed",
        tenant_name="Firma s.r.o.", record="ORD-1", provider="local", created_at=when, sent_at=when,
        ended_at=when, retained_until=None, documents=[], signers=[], events=[], chain_head="0" * 64,
        generated_at=when,
    )
    try:
        assert (await renderer.render(report)).startswith(b"%PDF")
        before = renderer.pool.pids
        task = asyncio.create_task(renderer.render(report))
        await asyncio.sleep(0)  # one step: the report is in the pool
        _kill(before)
        assert (await task).startswith(b"%PDF")
        assert renderer.pool.rebuilt == 1
    finally:
        await renderer.close()


_POOL_OWNER = textwrap.dedent("""
    import asyncio, sys
    from adapters._pool import RebuildingPool

    async def main():
        pool = RebuildingPool("signing_pool", process_name="esign-sign", max_workers=2)
        await pool.probe()
        await asyncio.gather(*(pool.run(abs, -1) for _ in range(4)))
        print(" ".join(map(str, pool.pids)), flush=True)
        await asyncio.Event().wait()  # until the test kills this process

    asyncio.run(main())
""")


def test_pool_workers_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", _POOL_OWNER], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert pids and all(not _gone(p) for p in pids)
        owner.kill()
        owner.wait(10)
        assert _wait_until_gone(pids) == []
    finally:
        owner.kill()


async def test_a_signer_signs_over_http_after_every_signing_worker_was_killed(
    api: Any, tenant: Any, container: Any, smtp_server: Any, shared_parts: dict[str, Any]
) -> None:
    from tests.api.conftest import Ceremony, envelope_body

    ceremony = Ceremony(api, container, smtp_server)
    pool = shared_parts["provider"].pool
    resp = await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    assert resp.status == 201, await resp.text()
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    await pool.probe()  # the session's workers are up
    _kill(pool.pids)
    body = await ceremony.sign(token, "+420601123456")  # 200, not 502 BrokenProcessPool
    assert body == {"status": "signed", "envelope_status": "completed"}
    readiness = await (await api.get("/readyz")).json()
    signing = next(c for c in readiness["components"] if c["name"] == "signing_pool")
    assert signing["ready"] is True


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_no_worker_outlives_a_serve_process_killed_with_sigkill(tmp_path: Path, unused_tcp_port: int) -> None:
    import urllib.request

    env = {**os.environ, "ESIGN_ENV": "dev", "ESIGN_DATA_DIR": str(tmp_path / "data"), "ESIGN_LOG_JSON": "false"}
    env.pop("ESIGN_DATABASE_URL", None)
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "esign_gateway", "migrate"], env=env, cwd=root, check=True,
                   capture_output=True, timeout=120)
    serve = subprocess.Popen([sys.executable, "-m", "esign_gateway", "serve", "--port", str(unused_tcp_port)],
                             env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert serve.stdout is not None
        for line in serve.stdout:  # the process says when it listens
            if "listening on" in line:
                break
        else:
            raise AssertionError(f"serve exited with {serve.wait()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/readyz", timeout=30) as resp:
            ready = json.loads(resp.read())
        assert ready["status"] == "ready", ready
        workers = [p for p in _children(serve.pid) if _comm(p).startswith("esign-")]
        kinds = sorted({_comm(p) for p in workers})
        assert kinds == ["esign-inspect", "esign-sign"], kinds  # the pools started with the process
        serve.kill()
        serve.wait(10)
        assert _wait_until_gone(workers) == []
    finally:
        serve.kill()
