"""The fields an audit event's hash covers, checked against the documented canonical form
(docs/evidence.md) computed here with hashlib and json alone — not with the code's own functions."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from esign_gateway.db.repositories import chain_body
from esign_gateway.domain import audit_chain
from esign_gateway.domain.envelope import Envelope, Signer
from esign_gateway.domain.events import DomainEvent
from esign_gateway.domain.states import EnvelopeStatus, SignerStatus

AT = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=UTC)
PREV = "ab" * 32


def _expected(prev: str, at: str) -> str:
    """SHA-256 of ``prev_hash + "\\n" + canonical JSON`` (sorted keys, no spaces, UTF-8)."""
    body = {
        "envelope_id": "env-1", "seq": 7, "type": "signer.viewed", "at": at, "actor": "signer",
        "signer_id": "sig-1", "data": {"channel": "email", "název": "Smlouva"}, "pii": None,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev}\n{text}".encode()).hexdigest()


def _code_hash(at: datetime) -> str:
    body = chain_body("env-1", 7, "signer.viewed", at, "signer", "sig-1", {"channel": "email", "název": "Smlouva"},
                      None)
    return audit_chain.link_hash(PREV, body)


def test_an_event_hash_is_the_documented_sha256_over_its_fields_time_included() -> None:
    assert _code_hash(AT) == _expected(PREV, "2026-11-23T09:30:15.123456+00:00")


def test_changing_only_the_event_time_changes_the_hash() -> None:
    later = AT + timedelta(seconds=1)
    assert _code_hash(later) == _expected(PREV, "2026-11-23T09:30:16.123456+00:00")
    assert _code_hash(later) != _code_hash(AT)


def test_the_same_moment_in_another_zone_hashes_the_same() -> None:
    """Stored times come back in whatever zone the database gives: the hash is of UTC."""
    prague = AT.astimezone(ZoneInfo("Europe/Prague"))
    assert _code_hash(prague) == _expected(PREV, "2026-11-23T09:30:15.123456+00:00")


def test_a_chain_whose_event_time_was_changed_does_not_verify() -> None:
    links, prev = [], audit_chain.GENESIS
    for seq in (1, 2, 3):
        body = chain_body("env-1", seq, "signer.viewed", AT + timedelta(minutes=seq), "system", None, {}, None)
        digest = audit_chain.link_hash(prev, body)
        links.append(audit_chain.ChainLink(seq, body, prev, digest))
        prev = digest
    assert audit_chain.verify(links) is None
    links[1].body["at"] = (AT + timedelta(minutes=2, seconds=1)).isoformat()
    assert audit_chain.verify(links) == 2


def test_free_text_beside_the_chain_is_not_hashed_and_an_undeliverable_reason_is_masked() -> None:
    """The mail server's answer quotes the address: it goes to the event's unchained ``note``,
    masked, and the chained ``data`` holds no free text."""
    signer = Signer(id="sig-1", name="Jana", email="jana.novakova@example.cz", phone="+420601123456", order=1,
                    status=SignerStatus.NOTIFIED)
    env = Envelope(id="env-1", tenant_id="t", record_type="deal", record_id="D-1", record_name=None, name="N",
                   message=None, language="cs", provider="local", created_at=AT, documents=[], signers=[signer],
                   status=EnvelopeStatus.SENT)
    env.mark_undeliverable(signer, "The mail server refused the recipient: 550 5.1.1 <jana.novakova@example.cz> "
                                   "No such user", AT)
    (event,) = env.events
    assert isinstance(event, DomainEvent) and event.type == "signer.undeliverable"
    assert "jana" not in json.dumps(event.data) and "550" not in json.dumps(event.data)
    assert event.note is not None and "550 5.1.1 <j***a@e***.cz>" in event.note
    assert "jana.novakova@example.cz" not in (signer.delivery_error or "") and "550 5.1.1" in (
        signer.delivery_error or "")
