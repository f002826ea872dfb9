"""Pure webhook helpers: outbound signing, retry schedule, SSRF guard (DigiSign's inbound signature:
tests/integration/test_digisign_signature.py)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest

from webhooks.guard import UnsafeUrl, check_url
from webhooks.schedule import RETRY_DELAYS, next_delay
from webhooks.signing import generate_secret, signature_header, verify

BODY = b'{"id":"0193b7d7-4941-7217-ad91-f2cf0ca9a8e6","event":"envelopeCompleted"}'


def test_secret_format_is_whsec_base64_of_at_least_24_bytes() -> None:
    import base64

    secret = generate_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24


def test_rotation_header_carries_both_signatures_and_either_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    header = signature_header([new, old], "evt_1", 1000, BODY)
    headers = {"webhook-id": "evt_1", "webhook-timestamp": "1000", "webhook-signature": header}
    verify(new, headers, BODY, now=1000)
    verify(old, headers, BODY, now=1000)


def test_retry_schedule_is_about_three_days_then_gives_up() -> None:
    total = sum((d for d in RETRY_DELAYS), timedelta())
    assert timedelta(days=3) < total < timedelta(days=3, hours=12)
    assert next_delay(1, jitter=0) == timedelta(seconds=5)
    assert next_delay(9, jitter=0) == timedelta(hours=24)
    assert next_delay(10) is None
    assert next_delay(1, retry_after=600, jitter=0) == timedelta(seconds=600)
    assert next_delay(1, retry_after=10**9, jitter=0) == timedelta(hours=24)
    jittered = {next_delay(2) for _ in range(20)}
    assert len(jittered) > 1 and all(timedelta(minutes=4.5) <= d <= timedelta(minutes=5.5) for d in jittered)


@pytest.mark.parametrize("url", ["https://127.0.0.1/x", "https://10.0.0.8/x", "https://[::1]/x",
                                 "https://169.254.169.254/", "http://example.com/", "ftp://example.com/",
                                 "https://192.168.1.1/", "https://localhost/"])
async def test_guard_refuses_internal_or_plain_http_targets(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        await check_url(url, allow_internal=False)


async def test_guard_allows_loopback_in_dev() -> None:
    await check_url("http://127.0.0.1:8080/hooks", allow_internal=True)


@pytest.mark.parametrize("address", [
    "100.64.0.1",  # carrier-grade NAT (shared address space): not private, not global either
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 of the metadata address
    "2001:0:4136:e378:8000:63bf:f5ff:fff7",  # Teredo
    "::ffff:10.0.0.1",
    "fd00::1",
    "198.18.0.1",  # benchmarking
])
def test_only_globally_routable_addresses_pass_the_guard(address: str) -> None:
    from webhooks.guard import forbidden

    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "2002:808:808::", "64:ff9b::808:808"])
def test_public_addresses_pass_the_guard(address: str) -> None:
    from webhooks.guard import forbidden

    assert not forbidden(ipaddress.ip_address(address))
