"""A mail server's answer quotes the signer's address: it stays out of the hash chain, is masked
wherever it is kept (the event's unchained note, the signer's delivery error, a job's last error),
and ``gdpr erase`` removes it — after which the chain still verifies. A real SMTP server (aiosmtpd)
refuses the addresses; the command line runs as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from adapters.email.smtp import SmtpEmailSender
from esign_gateway.config import Settings
from esign_gateway.container import Container
from esign_gateway.db.models import AuditEvent, Job, SignerRow
from tests.api.conftest import Ceremony, Tenant, envelope_body, signer
from tests.conftest import SmtpServer
from tests.fakes import FrozenClock

NOBODY = "nobody.here@example.cz"
LATER = "later.please@example.cz"


class _Refusing:
    """Refuses NOBODY for good and LATER for now, quoting the address as Postfix does."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address == NOBODY:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address == LATER:
            return f"451 4.2.0 <{address}>: Recipient address rejected: Greylisted"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.fixture
def refusing_smtp() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(_Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    yield f"smtp://127.0.0.1:{port}"
    controller.stop()


@pytest.fixture
def ceremony(api: Any, container: Container, smtp_server: SmtpServer) -> Ceremony:
    return Ceremony(api, container, smtp_server)


async def _refused_envelope(api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, url: str) -> str:
    container.notifications.email = SmtpEmailSender.from_url(url, sender="esign <noreply@example.test>")
    body = envelope_body([signer("Nikdo", NOBODY, "+420602111222"), signer("Později", LATER, "+420603111222")])
    env = await (await api.post("/v1/envelopes", json=body, headers=tenant.auth)).json()
    await ceremony.run_jobs()
    return str(env["id"])


async def _envelope_jobs(envelope_id: str) -> list[Job]:
    return [j for j in await Job.all() if j.payload.get("envelope_id") == envelope_id]


async def test_a_refusal_quoting_the_address_stays_out_of_the_chain_and_is_stored_masked(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, refusing_smtp: str
) -> None:
    envelope_id = await _refused_envelope(api, tenant, ceremony, container, refusing_smtp)
    (event,) = await AuditEvent.filter(envelope_id=envelope_id, type="signer.undeliverable")
    chained = json.dumps([event.type, event.actor, event.signer_id, event.data], ensure_ascii=False)
    assert "nobody" not in chained and "550" not in chained  # no free text among the hashed fields
    assert event.note is not None and "550 5.1.1" in event.note and "<n***e@e***.cz>" in event.note
    nobody = await SignerRow.get(email=NOBODY)
    assert nobody.status == "undeliverable" and nobody.delivery_error is not None
    assert NOBODY not in nobody.delivery_error and "550 5.1.1" in nobody.delivery_error
    errors = [j.last_error for j in await _envelope_jobs(envelope_id) if j.last_error]
    assert errors and all(LATER not in e for e in errors)  # the greylisted one is retried later
    assert any("451 4.2.0 <l***e@e***.cz>" in e for e in errors)
    trail = await (await api.get(f"/v1/envelopes/{envelope_id}/audit",
                                 headers={**tenant.auth, "Accept": "application/json"})).json()
    shown = next(e for e in trail["events"] if e["type"] == "signer.undeliverable")
    assert "550 5.1.1" in shown["note"] and NOBODY not in json.dumps(trail)
    assert (await container.archive.verify_chains(envelope_id))[0].broken_at is None


async def test_gdpr_erase_removes_the_unchained_text_and_the_job_errors_and_the_chain_still_verifies(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container, refusing_smtp: str, clock: FrozenClock,
    settings: Settings,
) -> None:
    envelope_id = await _refused_envelope(api, tenant, ceremony, container, refusing_smtp)
    # an error stored before masking existed (or by a handler that quotes an address itself)
    job = (await _envelope_jobs(envelope_id))[0]
    await Job.filter(id=job.id).update(last_error=f"DeliveryError: 451 <{LATER}> greylisted")
    resp = await api.post(f"/v1/envelopes/{envelope_id}/cancel", json={"reason": "wrong addresses"},
                          headers=tenant.auth)
    assert resp.status == 200
    clock.advance(hours=2)
    await ceremony.run_jobs()

    env = {**os.environ, "ESIGN_DATA_DIR": str(settings.data_dir), "ESIGN_ENV": "test", "ESIGN_LOG_JSON": "false",
           "ESIGN_DATABASE_URL": settings.resolved_database_url}

    async def cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "esign_gateway", *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return proc.returncode, out.decode() + err.decode()

    for address in (NOBODY, LATER):
        code, out = await cli("gdpr", "erase", "--email", address)
        assert code == 0 and f"erased  {envelope_id}" in out, out

    events = await AuditEvent.filter(envelope_id=envelope_id).order_by("seq")
    assert all(e.note is None for e in events)
    assert all(s.delivery_error is None for s in await SignerRow.filter(envelope_id=envelope_id))
    assert all(j.last_error is None for j in await _envelope_jobs(envelope_id))
    dump = json.dumps([[e.data, e.note, e.ip, e.user_agent] for e in events], ensure_ascii=False)
    assert "later" not in dump and "nobody" not in dump
    erased = [e for e in events if e.type == "signer.personal_data_erased"]
    assert len(erased) == 2
    # the chain is whole after the erase: the command the operator runs says so
    code, out = await cli("audit", "verify", envelope_id)
    assert code == 0 and f"ok      {envelope_id}" in out, out
    assert (await container.archive.verify_chains(envelope_id))[0].broken_at is None


async def test_changing_only_a_stored_event_time_breaks_the_chain(
    api: Any, tenant: Tenant, ceremony: Ceremony, container: Container
) -> None:
    env = await (await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)).json()
    await ceremony.run_jobs()
    assert (await container.archive.verify_chains(env["id"]))[0].broken_at is None
    second = await AuditEvent.get(envelope_id=env["id"], seq=2)
    await AuditEvent.filter(id=second.id).update(at=second.at + timedelta(seconds=1))
    assert (await container.archive.verify_chains(env["id"]))[0].broken_at == 2
