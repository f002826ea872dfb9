"""The Envelope aggregate: states, signing order, expiry — pure Python, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from esign_gateway.domain import otp
from esign_gateway.domain.envelope import Document, Envelope, Signer
from esign_gateway.domain.states import EnvelopeStatus, InvalidTransition, SignerStatus

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


def envelope(*orders: int) -> Envelope:
    return Envelope(
        id="e1", tenant_id="t1", record_type="deal", record_id="D-1", record_name=None, name="Smlouva",
        message=None, language="cs", provider="local", created_at=T0,
        documents=[Document(id="d1", name="a.pdf", pages=1, size=10, sha256="a" * 64, current_sha256="a" * 64)],
        signers=[Signer(id=f"s{i}", name=f"S{i}", email=f"s{i}@x.cz", phone="+420601123456", order=o, position=i)
                 for i, o in enumerate(orders)],
    )


def sign(env: Envelope, signer_id: str, now: datetime) -> list[Signer]:
    s = env.signer(signer_id)
    env.mark_verified(s, now, None, None)
    return env.record_signature(s, now, {"d1": "b" * 64}, None, None, None)


def test_send_sets_default_expiry_of_seven_days_and_notifies_lowest_order() -> None:
    env = envelope(1, 2, 2)
    notified = env.send(T0)
    assert env.status == EnvelopeStatus.SENT and env.expires_at == T0 + timedelta(days=7)
    assert [s.id for s in notified] == ["s0"]
    assert [s.status for s in env.signers] == [SignerStatus.NOTIFIED, SignerStatus.WAITING, SignerStatus.WAITING]


def test_equal_order_signs_in_parallel_and_next_order_follows_when_all_lower_signed() -> None:
    env = envelope(1, 1, 2)
    env.send(T0)
    assert sign(env, "s0", T0) == []  # s1 (same order) has not signed yet
    nxt = sign(env, "s1", T0)
    assert [s.id for s in nxt] == ["s2"]
    sign(env, "s2", T0)
    assert env.status == EnvelopeStatus.COMPLETED
    assert env.retained_until == datetime(2029, 11, 23, 9, tzinfo=UTC)
    assert env.documents[0].signed_sha256 == "b" * 64


def test_one_decline_declines_the_envelope_and_terminal_states_never_change() -> None:
    env = envelope(1, 1)
    env.send(T0)
    env.decline(env.signer("s0"), "ne", T0, None, None)
    assert env.status == EnvelopeStatus.DECLINED
    with pytest.raises(InvalidTransition):
        env.cancel(None, T0)
    with pytest.raises(InvalidTransition):
        env.mark_verified(env.signer("s1"), T0, None, None)


def test_expiry_is_enforced_at_the_exact_second() -> None:
    env = envelope(1)
    env.send(T0)
    assert env.expires_at is not None
    env.mark_verified(env.signer("s0"), env.expires_at - timedelta(seconds=1), None, None)
    with pytest.raises(InvalidTransition) as err:
        env.record_signature(env.signer("s0"), env.expires_at, {"d1": "b" * 64}, None, None, None)
    assert err.value.reason == "expired"
    assert env.status == EnvelopeStatus.EXPIRED
    assert [e.type for e in env.events][-1] == "envelope.expired"


def test_waiting_signer_cannot_act() -> None:
    env = envelope(1, 2)
    env.send(T0)
    with pytest.raises(InvalidTransition):
        env.mark_verified(env.signer("s1"), T0, None, None)


def test_ten_wrong_codes_put_the_signer_in_auth_failed() -> None:
    env = envelope(1)
    env.send(T0)
    s = env.signer("s0")
    results, tries = [], otp.Tries()
    for _ in range(10):
        tries = tries.wrong() if tries.on_code < 2 else tries.new_code().wrong()  # over several codes
        results.append(env.record_code_rejected(s, T0, tries=tries, ip=None, user_agent=None))
    assert results == [False] * 9 + [True]
    assert s.failed_attempts == 10
    assert s.status == SignerStatus.AUTH_FAILED
    assert "signer.auth_failed" in [e.type for e in env.events]


def test_cancel_only_from_sent_and_reports_told_signers() -> None:
    env = envelope(1, 2)
    with pytest.raises(InvalidTransition):
        env.cancel("x", T0)
    env.send(T0)
    told = env.cancel("x", T0)
    assert [s.id for s in told] == ["s0"]  # the waiting signer never heard of it
    assert env.status == EnvelopeStatus.CANCELLED
