"""DigiSign's webhook signature (``Signature: t=…,s=…``, notes §5, C15) and the webhook secrets every
web process reads from the database (C12: no restart for a newly stored secret)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from adapters.providers.digisign.signature import InboundSignatureError, sign_inbound, verify_inbound
from esign_gateway.secretbox import SecretBox
from esign_gateway.services.remote import WebhookSecrets, store_webhook_secret, webhook_secret_loader
from tests.fakes import FrozenClock

BODY = b'{"id":"0193b7d7-4941-7217-ad91-f2cf0ca9a8e6","event":"envelopeCompleted"}'
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_the_sdks_test_vector_verifies() -> None:
    """``../shared/digisign-fixtures/SOURCES.md``: computed the SDK's way."""
    header = "t=1631618784,s=827f77eaadfe17489ea4344d72556c51c7d3c754b96f5d1af15d73f015b9d487"
    verify_inbound(["secret"], header, b'{"foo": "bar"}', now=1631618784)
    assert sign_inbound("secret", 1631618784, b'{"foo": "bar"}') == header
    with pytest.raises(InboundSignatureError):
        verify_inbound(["secret"], header, b'{"foo":"bar"}', now=1631618784)  # re-serialised: not the raw body


def test_inbound_signature_verifies_and_rejects_tampering_age_and_wrong_secret() -> None:
    header = sign_inbound("s3cret", 1_700_000_000, BODY)
    verify_inbound(["other", "s3cret"], header, BODY, now=1_700_000_000 + 299)
    with pytest.raises(InboundSignatureError):
        verify_inbound(["s3cret"], header, BODY + b" ", now=1_700_000_000)
    with pytest.raises(InboundSignatureError):
        verify_inbound(["s3cret"], header, BODY, now=1_700_000_000 + 301)
    with pytest.raises(InboundSignatureError):
        verify_inbound(["nope"], header, BODY, now=1_700_000_000)
    for bad in (None, "", "t=abc,s=00", "s=00,t=1"):
        with pytest.raises(InboundSignatureError):
            verify_inbound(["s3cret"], bad, BODY, now=1_700_000_000)


def test_a_timestamp_a_few_seconds_ahead_of_our_clock_passes_and_a_far_one_does_not() -> None:
    """C15: DigiSign's clock may run ahead of ours; 300 s either way (the SDK refuses only the past)."""
    header = sign_inbound("s3cret", 1_700_000_005, BODY)
    verify_inbound(["s3cret"], header, BODY, now=1_700_000_000)
    verify_inbound(["s3cret"], sign_inbound("s3cret", 1_700_000_300, BODY), BODY, now=1_700_000_000)
    with pytest.raises(InboundSignatureError):
        verify_inbound(["s3cret"], sign_inbound("s3cret", 1_700_000_301, BODY), BODY, now=1_700_000_000)


class CountingLoad:
    """The real loader (the database), counted: how often the secrets were read."""

    def __init__(self, load: Callable[[str], Awaitable[list[str]]]) -> None:
        self.load, self.reads = load, 0

    async def __call__(self, provider: str) -> list[str]:
        self.reads += 1
        return await self.load(provider)


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(SecretBox.generate_key())


async def test_a_secret_stored_by_another_process_is_seen_within_seconds(container: object, box: SecretBox) -> None:
    clock = FrozenClock(T0)
    load = CountingLoad(webhook_secret_loader(box))
    secrets = WebhookSecrets(clock=clock, load=load, configured={"digisign": ["from-env"]})
    await store_webhook_secret(box, T0, "digisign", "hook-1", "first")
    assert await secrets.get("digisign") == ["from-env", "first"]
    await store_webhook_secret(box, T0, "digisign", "hook-2", "second")  # e.g. register-webhooks elsewhere
    clock.advance(seconds=4)
    assert "second" not in await secrets.get("digisign") and load.reads == 1  # cached: no query per webhook
    clock.advance(seconds=1)
    assert await secrets.get("digisign") == ["from-env", "first", "second"] and load.reads == 2


async def test_a_signature_matching_no_secret_reads_them_again_at_most_once_a_second(
    container: object, box: SecretBox
) -> None:
    clock = FrozenClock(T0)
    load = CountingLoad(webhook_secret_loader(box))
    secrets = WebhookSecrets(clock=clock, load=load)
    assert await secrets.get("digisign") == []
    await store_webhook_secret(box, T0, "digisign", "hook-1", "new")
    assert await secrets.after_miss("digisign") == ["new"]  # stored a moment ago: found at once
    assert load.reads == 2
    for _ in range(50):  # a flood of forged deliveries in the same second: no more queries
        assert await secrets.after_miss("digisign") is None
    assert load.reads == 2
    clock.advance(seconds=1)
    assert await secrets.after_miss("digisign") is None and load.reads == 3  # read again: nothing new
