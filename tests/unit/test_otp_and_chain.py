"""SMS-code policy, the audit hash chain and masking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from esign_gateway.domain import audit_chain, otp
from esign_gateway.domain.masking import mask_email, mask_phone

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


def test_codes_are_six_digits_and_digests_need_the_pepper() -> None:
    codes = {otp.new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 150
    a = otp.code_digest(b"pepper-1", "s1", "123456")
    assert a != otp.code_digest(b"pepper-2", "s1", "123456")
    assert a != otp.code_digest(b"pepper-1", "s2", "123456")  # bound to one signer


def test_throttle_thirty_seconds_apart_and_five_an_hour() -> None:
    assert otp.next_code_allowed_at([], T0).allowed
    assert not otp.next_code_allowed_at([T0], T0 + timedelta(seconds=29)).allowed
    assert otp.next_code_allowed_at([T0], T0 + timedelta(seconds=30)).allowed
    five = [T0 + timedelta(minutes=i) for i in range(5)]
    verdict = otp.next_code_allowed_at(five, T0 + timedelta(minutes=10))
    assert not verdict.allowed and verdict.retry_at == T0 + timedelta(hours=1)
    assert otp.next_code_allowed_at(five, T0 + timedelta(hours=1, seconds=1)).allowed


def _chain(n: int) -> list[audit_chain.ChainLink]:
    links, prev = [], audit_chain.GENESIS
    for seq in range(1, n + 1):
        body = {"seq": seq, "type": "signer.viewed", "data": {"k": seq}}
        digest = audit_chain.link_hash(prev, body)
        links.append(audit_chain.ChainLink(seq, body, prev, digest))
        prev = digest
    return links


def test_chain_verifies_and_reports_the_first_broken_link() -> None:
    links = _chain(5)
    assert audit_chain.verify(links) is None
    links[2].body["data"]["k"] = 99
    assert audit_chain.verify(links) == 3
    assert audit_chain.verify(_chain(5)[:2] + _chain(5)[3:]) == 4  # a removed event is caught too


def test_pii_commitment_is_salted() -> None:
    a = audit_chain.pii_commitment("salt1", "127.0.0.1", "Firefox")
    assert a != audit_chain.pii_commitment("salt2", "127.0.0.1", "Firefox")
    assert audit_chain.pii_commitment("salt1", None, None) is None


def test_masking() -> None:
    assert mask_phone("+420601123456") == "+420 *** *** 456"
    assert mask_email("jana.novakova@example.cz") == "j***a@e***.cz"
