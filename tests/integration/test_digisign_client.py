"""The DigiSign adapter against the fake DigiSign over real HTTP: tokens, retries, validation."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.providers.digisign.client import DigiSignClient
from adapters.providers.digisign.provider import DigiSignProvider
from adapters.providers.digisign.signature import verify_inbound
from esign_gateway.errors import ProviderError, ValidationFailedError
from esign_gateway.ports import RemoteEnvelope, RemoteSigner
from tests.factories import make_pdf
from tests.fakes import FrozenClock
from tests.fakes.digisign import FakeDigiSign, Fault

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Sleeps:
    """The client's backoff goes through this: recorded, not waited."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def fake(fake_digisign: FakeDigiSign) -> FakeDigiSign:
    return fake_digisign


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(fake: FakeDigiSign, clock: FrozenClock, sleeps: Sleeps) -> AsyncIterator[DigiSignClient]:
    c = DigiSignClient(fake.base_url, "ak_test", "sk_test", clock=clock.now, sleep=sleeps, timeout_seconds=0.5)
    await c.start()
    yield c
    await c.close()


async def test_token_is_cached_until_five_minutes_before_exp(
    client: DigiSignClient, fake: FakeDigiSign, clock: FrozenClock
) -> None:
    await client.call("GET", "/api/account/me")
    await client.call("GET", "/api/account/me")
    assert fake.token_requests == 1
    clock.advance(hours=23, minutes=54)  # 6 minutes left: still good
    await client.call("GET", "/api/account/me")
    assert fake.token_requests == 1
    clock.advance(minutes=2)  # 4 minutes left: renewed before it can expire mid-request
    await client.call("GET", "/api/account/me")
    assert fake.token_requests == 2


async def test_a_401_fetches_a_new_token_once_and_repeats_the_call(client: DigiSignClient, fake: FakeDigiSign) -> None:
    await client.call("GET", "/api/account/me")
    fake.tokens.clear()  # revoked at DigiSign
    assert (await client.call("GET", "/api/account/me"))["id"] == "acc"
    assert fake.token_requests == 2


async def test_wrong_keys_are_a_provider_error(fake: FakeDigiSign, clock: FrozenClock, sleeps: Sleeps) -> None:
    c = DigiSignClient(fake.base_url, "ak_test", "wrong", clock=clock.now, sleep=sleeps)
    await c.start()
    try:
        with pytest.raises(ProviderError, match="refused the API keys"):
            await c.call("GET", "/api/account/me")
    finally:
        await c.close()


async def test_429_waits_as_long_as_retry_after_says(client: DigiSignClient, fake: FakeDigiSign,
                                                     sleeps: Sleeps) -> None:
    fake.faults.append(Fault(path="/api/account/me", status=429, retry_after=7))
    assert (await client.call("GET", "/api/account/me"))["id"] == "acc"
    assert sleeps.delays == [7.0]
    assert fake.calls.count(("GET", "/api/account/me")) == 2


async def test_500_then_success(client: DigiSignClient, fake: FakeDigiSign, sleeps: Sleeps) -> None:
    fake.faults.append(Fault(path="/api/account/me", status=500, times=2))
    assert (await client.call("GET", "/api/account/me"))["id"] == "acc"
    assert len(sleeps.delays) == 2 and sleeps.delays[1] > sleeps.delays[0]  # backoff grows


async def test_a_timeout_is_retried(client: DigiSignClient, fake: FakeDigiSign, sleeps: Sleeps) -> None:
    fake.faults.append(Fault(path="/api/account/me", delay=2.0))  # longer than the client's 0.5 s
    assert (await client.call("GET", "/api/account/me"))["id"] == "acc"
    assert len(sleeps.delays) == 1


async def test_a_dead_digisign_ends_in_a_provider_error_after_the_bound(
    client: DigiSignClient, fake: FakeDigiSign, sleeps: Sleeps
) -> None:
    fake.faults.append(Fault(path="/api/account/me", status=503, times=100))
    with pytest.raises(ProviderError, match=r"503 .* after 5 attempts"):
        await client.call("GET", "/api/account/me")
    assert fake.calls.count(("GET", "/api/account/me")) == 5 and len(sleeps.delays) == 4


def _envelope(phone: str = "+420601123456", email: str = "jana@example.cz") -> RemoteEnvelope:
    return RemoteEnvelope(
        envelope_id="01a20000-0000-7000-8000-000000000001", name="Smlouva", message=None, language="cs",
        expires_at=T0 + timedelta(days=7), documents=[("smlouva.pdf", make_pdf())],
        signers=[RemoteSigner("s-1", "Jana Nováková", email, phone, 1)], reminder_days_before_expiry=[1],
    )


async def test_czech_validation_errors_become_our_field_paths_and_the_draft_is_removed(
    client: DigiSignClient, fake: FakeDigiSign
) -> None:
    provider = DigiSignProvider(client, verify_signature=verify_inbound)
    with pytest.raises(ValidationFailedError) as caught:
        await provider.prepare(_envelope(phone="601123456", email="jana@@example"))
    assert caught.value.errors == [
        {"field": "signers[0].email", "message": "DigiSign: Tato hodnota není platná e-mailová adresa."},
        {"field": "signers[0].phone", "message": "DigiSign: Tato hodnota není platné telefonní číslo."},
    ]
    assert fake.envelopes == {}  # nothing left behind at DigiSign


async def test_prepare_is_safe_to_repeat_and_send_twice_is_one_send(
    client: DigiSignClient, fake: FakeDigiSign
) -> None:
    provider = DigiSignProvider(client, verify_signature=verify_inbound)
    first = await provider.prepare(_envelope())
    again = await provider.prepare(_envelope())  # e.g. our transaction failed and the CRM retried
    assert len(fake.envelopes) == 1 and again.ref != first.ref  # the old draft was replaced
    remote = fake.envelopes[again.ref]
    assert remote["metadata"] == "01a20000-0000-7000-8000-000000000001"
    assert remote["recipients"][0]["authenticationOnOpen"] == "sms" and again.signer_refs == {
        "s-1": remote["recipients"][0]["id"]}
    assert [(n["type"], n["days"]) for n in remote["notifications"]] == [("toSignBeforeExpires", 1)]
    assert remote["validTo"] is not None and len(remote["tags"]) == 1
    await provider.send(again.ref)
    await provider.send(again.ref)
    assert fake.calls.count(("POST", f"/api/envelopes/{again.ref}/send")) == 1
    assert remote["status"] == "sent"
    # once sent, a repeated prepare finds it instead of making a second (billed) envelope
    assert (await provider.prepare(_envelope())).ref == again.ref


def _cli_env(fake: FakeDigiSign, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "ESIGN_DATA_DIR": str(tmp_path), "ESIGN_ENV": "test", "ESIGN_LOG_JSON": "false",
           "ESIGN_DIGISIGN_BASE_URL": fake.base_url, "ESIGN_DIGISIGN_ACCESS_KEY": "ak_test",
           "ESIGN_DIGISIGN_SECRET_KEY": "sk_test", "ESIGN_PUBLIC_URL": "https://gw.example.test"}
    env.pop("ESIGN_DATABASE_URL", None)
    return env


async def _cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "esign_gateway", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == code, (out.decode(), err.decode())
    return out.decode()


def _stored(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "esign.sqlite3") as db:
        return db.execute("SELECT name, sealed FROM gateway_secret WHERE name LIKE 'digisign_webhook:%'").fetchall()


async def _opened(tmp_path: Path) -> set[str]:
    from esign_gateway.secretbox import SecretBox

    box = SecretBox((tmp_path / "secret.key").read_bytes().strip())
    return {box.open(sealed) for _, sealed in _stored(tmp_path)}


async def test_register_webhooks_command_registers_one_per_event_and_keeps_the_secrets(
    fake: FakeDigiSign, tmp_path: Path
) -> None:
    env = _cli_env(fake, tmp_path)
    await _cli(env, "migrate")
    out = await _cli(env, "digisign", "register-webhooks")
    assert "14 webhook(s) registered, 0 already there" in out
    assert {w["url"] for w in fake.webhooks.values()} == {"https://gw.example.test/webhooks/digisign"}
    assert {w["event"] for w in fake.webhooks.values()} >= {"envelopeCompleted", "recipientSigned", "envelopeExpired",
                                                            "envelopeDeleted", "recipientNonDelivered"}
    assert "0 webhook(s) registered, 14 already there" in await _cli(env, "digisign", "register-webhooks")
    assert len(fake.webhooks) == 14  # idempotent
    sealed = _stored(tmp_path)
    assert len(sealed) == 14
    assert not any(w["secret"] in row[1] for w in fake.webhooks.values() for row in sealed)  # sealed, not plain
    assert await _opened(tmp_path) == {w["secret"] for w in fake.webhooks.values()}


async def test_register_webhooks_stores_the_secrets_of_hooks_that_already_exist(
    fake: FakeDigiSign, tmp_path: Path
) -> None:
    """After a database restore, or on a second deployment against the same DigiSign account, the
    hooks are there but their secrets are not in our database: the command stores them."""
    env = _cli_env(fake, tmp_path)
    await _cli(env, "migrate")
    await _cli(env, "digisign", "register-webhooks")
    with sqlite3.connect(tmp_path / "esign.sqlite3") as db:
        db.execute("DELETE FROM gateway_secret WHERE name LIKE 'digisign_webhook:%'")
    fake.secrets_in_list = False  # the list may not show them: each hook is read (SDK Resource/Webhook.secret)
    out = await _cli(env, "digisign", "register-webhooks")
    assert "0 webhook(s) registered, 14 already there; the secrets of all 14 are stored" in out
    assert len(fake.webhooks) == 14
    assert await _opened(tmp_path) == {w["secret"] for w in fake.webhooks.values()}


async def test_register_webhooks_recreates_a_hook_whose_secret_digisign_does_not_show(
    fake: FakeDigiSign, tmp_path: Path
) -> None:
    env = _cli_env(fake, tmp_path)
    await _cli(env, "migrate")
    await _cli(env, "digisign", "register-webhooks")
    before = set(fake.webhooks)
    with sqlite3.connect(tmp_path / "esign.sqlite3") as db:
        db.execute("DELETE FROM gateway_secret WHERE name LIKE 'digisign_webhook:%'")
    fake.secrets_readable = False
    out = await _cli(env, "digisign", "register-webhooks")
    assert out.count("re-created (DigiSign did not show its secret), secret stored") == 14
    assert len(fake.webhooks) == 14 and not set(fake.webhooks) & before  # each one made again
    assert await _opened(tmp_path) == {w["secret"] for w in fake.webhooks.values()}


async def test_a_draft_that_may_not_be_deleted_is_discarded(client: DigiSignClient, fake: FakeDigiSign) -> None:
    """C11: an API key without the DELETE permission (403): the draft goes to DigiSign's trash instead."""
    fake.forbid_delete = True
    provider = DigiSignProvider(client, verify_signature=verify_inbound)
    with pytest.raises(ValidationFailedError):
        await provider.prepare(_envelope(phone="601123456"))
    (remote,) = fake.envelopes.values()
    assert remote["discardedAt"] is not None and remote["status"] == "draft"
    handle = await provider.prepare(_envelope())  # a trashed draft is not ours to adopt again
    assert handle.ref != remote["id"] and fake.envelopes[handle.ref].get("discardedAt") is None


async def test_an_extend_digisign_does_not_take_is_reported_not_assumed(
    client: DigiSignClient, fake: FakeDigiSign
) -> None:
    """C4: the body keys of ``PUT …/extend`` are not documented; if DigiSign keeps its old ``validTo``
    the adapter says so."""
    provider = DigiSignProvider(client, verify_signature=verify_inbound)
    handle = await provider.prepare(_envelope())
    assert await provider.send(handle.ref, T0 + timedelta(days=7)) == []
    fake.extend_keys = ("expiresAt",)  # it reads another key: ours is ignored
    (note,) = await provider.extend(handle.ref, T0 + timedelta(days=10))
    assert note.type == "envelope.provider_expiry_mismatch"
    assert note.data == {"expires_at": "2026-12-03T09:00:00+00:00", "provider_expires_at": "2026-11-30T10:00:00+01:00"}
    fake.extend_keys = ("validTo",)
    assert await provider.extend(handle.ref, T0 + timedelta(days=10)) == []


async def test_extend_and_remind_refused_for_the_state_are_invalid_state_with_digisigns_text(
    client: DigiSignClient, fake: FakeDigiSign
) -> None:
    """C16: DigiSign's 400 without ``propertyPath`` is our 409 ``invalid_state``, not an unmapped error."""
    from esign_gateway.errors import InvalidStateError

    provider = DigiSignProvider(client, verify_signature=verify_inbound)
    handle = await provider.prepare(_envelope())  # a draft: not extendable, its recipient not resendable
    with pytest.raises(InvalidStateError, match='DigiSign: Envelope status must be one of "sent"') as caught:
        await provider.extend(handle.ref, T0 + timedelta(days=10))
    assert caught.value.status == 409
    with pytest.raises(InvalidStateError, match='EnvelopeRecipient status must be one of "sent"'):
        await provider.remind(handle.ref, handle.signer_refs["s-1"])


async def test_validto_ignored_on_create_is_put_right_on_the_draft(client: DigiSignClient, fake: FakeDigiSign) -> None:
    """C3 with the strict fake's behaviour: ``validTo`` on create ignored; the draft is read back and
    its ``validTo`` set by a partial update, ``expiration`` (rounded-up days) sent as well."""
    fake.valid_to_on_create = False
    provider = DigiSignProvider(client, verify_signature=verify_inbound)
    handle = await provider.prepare(_envelope())
    remote = fake.envelopes[handle.ref]
    assert remote["expiration"] == 7 and remote["validTo"] == "2026-11-30T09:00:00+00:00"
    assert ("PUT", f"/api/envelopes/{handle.ref}") in fake.calls


async def test_a_post_that_never_reached_digisign_is_tried_again(
    fake: FakeDigiSign, clock: FrozenClock, sleeps: Sleeps
) -> None:
    """No connection at all: DigiSign never saw the request, so even a POST may be repeated."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here
    c = DigiSignClient(f"http://127.0.0.1:{port}", "ak_test", "sk_test", clock=clock.now, sleep=sleeps, max_attempts=3)
    await c.start()
    try:
        with pytest.raises(ProviderError, match="after 3 attempts"):  # not "may or may not have taken effect"
            await c._send("POST", "/api/envelopes", json={}, auth=None)
    finally:
        await c.close()
    assert len(sleeps.delays) == 2


async def test_a_post_that_times_out_is_not_repeated(client: DigiSignClient, fake: FakeDigiSign,
                                                     sleeps: Sleeps) -> None:
    """C5: the SDK never retries and no idempotency key exists: a POST without an answer in time may
    have happened, so it is given back to the caller to read back, not sent again."""
    from adapters.providers.digisign.client import DigiSignUncertain

    await client.call("GET", "/api/account/me")  # the token first
    fake.faults.append(Fault(path="/api/envelopes", method="POST", delay=2.0))  # longer than the 0.5 s timeout
    with pytest.raises(DigiSignUncertain, match="may or may not have taken effect"):
        await client.call("POST", "/api/envelopes", json={"name": "x"})
    assert fake.calls.count(("POST", "/api/envelopes")) == 1 and sleeps.delays == []
