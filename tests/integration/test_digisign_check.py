"""``esign-gateway digisign check`` against the fake DigiSign serving constructed enums and an API
document: it prints where the adapter's literals differ and exits 1 when a difference matters."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from adapters.providers.digisign.provider import AUTHENTICATION_METHODS, ENVELOPE_STATES, EVENTS, RECIPIENT_STATES
from tests.fakes.digisign import ENUMS, FakeDigiSign


async def _check(fake: FakeDigiSign, tmp_path: Path) -> tuple[int, str]:
    env = {**os.environ, "ESIGN_DATA_DIR": str(tmp_path), "ESIGN_ENV": "test", "ESIGN_LOG_JSON": "false",
           "ESIGN_DIGISIGN_BASE_URL": fake.base_url, "ESIGN_DIGISIGN_ACCESS_KEY": fake.access_key,
           "ESIGN_DIGISIGN_SECRET_KEY": fake.secret_key}
    env.pop("ESIGN_DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "esign_gateway", "digisign", "check", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode in (0, 1), err.decode()
    return int(proc.returncode or 0), out.decode()


def _line(out: str, group: str) -> str:
    return next(line.strip() for line in out.splitlines() if line.strip().startswith(f"{group}:"))


async def test_the_enums_as_the_notes_know_them_show_the_unconfirmed_reminder_type(
    fake_digisign: FakeDigiSign, tmp_path: Path
) -> None:
    code, out = await _check(fake_digisign, tmp_path)
    assert code == 1
    assert _line(out, "notification types") == (
        "notification types: DIFFERS (GET /api/enums/envelope-notification-type): the adapter's "
        "toSignBeforeExpires not listed by DigiSign")
    assert _line(out, "envelope states") == "envelope states: same (GET /api/enums/envelope-status)"
    assert _line(out, "webhook events").startswith("webhook events: differs (for information)")
    assert "recipientDownloaded" in _line(out, "webhook events")
    assert "/api/docs.json: not available" in out


async def test_the_same_literals_pass_and_a_new_state_at_digisign_fails(
    fake_digisign: FakeDigiSign, tmp_path: Path
) -> None:
    fake_digisign.enums = {**ENUMS, "envelope-notification-type": ["toSignAfterSent", "toSignBeforeExpires"],
                           "webhook-event": list(EVENTS), "authentication-method": list(AUTHENTICATION_METHODS)}
    code, out = await _check(fake_digisign, tmp_path)
    assert code == 0, out
    assert all(": same (" in line for line in out.splitlines()[1:] if ": " in line and "docs.json" not in line)
    fake_digisign.enums["envelope-recipient-status"] = [*RECIPIENT_STATES, "waitingForOthers"]
    code, out = await _check(fake_digisign, tmp_path)
    assert code == 1
    assert "DigiSign's waitingForOthers unknown to the adapter" in _line(out, "recipient states")


async def test_without_enums_the_api_document_is_read(fake_digisign: FakeDigiSign, tmp_path: Path) -> None:
    def prop(values: list[str]) -> dict[str, Any]:
        return {"type": "string", "enum": values}

    fake_digisign.enums = {}
    fake_digisign.docs_json = {"openapi": "3.0.0", "components": {"schemas": {
        "Envelope.jsonld-envelope.read": {"properties": {"status": prop([*ENVELOPE_STATES, "archived"])}},
        "EnvelopeRecipient-recipient.read": {"properties": {"status": prop(list(RECIPIENT_STATES)),
                                                            "authenticationOnOpen": prop(["none", "sms"])}},
        "Webhook": {"properties": {"event": {"anyOf": [prop(list(EVENTS))]}}},
    }}}
    code, out = await _check(fake_digisign, tmp_path)
    assert code == 1
    assert _line(out, "envelope states") == (
        "envelope states: DIFFERS (docs.json Envelope.jsonld-envelope.read.status): DigiSign's archived unknown "
        "to the adapter (reported as unknown)")
    assert _line(out, "webhook events") == "webhook events: same (docs.json Webhook.event)"
    assert _line(out, "notification types").startswith("notification types: not found at DigiSign (tried "
                                                        "/api/enums/envelope-notification-type")
