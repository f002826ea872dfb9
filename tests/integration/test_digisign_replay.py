"""The DigiSign adapter against DigiSign's own recorded answers: a real aiohttp server on a local port
answers with the bodies in ``../shared/digisign-fixtures/`` (``SOURCES.md`` there says where each comes
from: the official PHP SDK's test responses, a real 401, three real webhooks of December 2024).

The recorded data is read where it lies, at test time, and not copied into the project: part of it
comes from public code whose licence is not known (the webhook bodies, the 401). Without
``../shared`` these tests skip and say so, as ``make corpus`` does for the PDF corpus.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.providers.digisign.client import DigiSignClient, DigiSignInvalid
from adapters.providers.digisign.provider import DigiSignProvider
from adapters.providers.digisign.signature import sign_inbound, verify_inbound
from esign_gateway.errors import InvalidStateError, ProviderError, ValidationFailedError
from esign_gateway.ports import InboundEvent, RemoteEnvelope, RemoteSigner
from tests.factories import make_pdf
from tests.fakes import FrozenClock

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "digisign-fixtures"
pytestmark = pytest.mark.skipif(
    not (FIXTURES / "SOURCES.md").is_file(),
    reason=f"the recorded DigiSign data ({FIXTURES}) is not on this machine; it is read in place, never copied",
)

ENVELOPE = "0211f410-268a-4ac3-ac40-b41ee7647092"  # the SDK fixtures' envelope
RECIPIENT = "0b635f61-245a-4e67-a3c0-af73e63d81dc"
DOCUMENT = "71b06fec-60e5-4f4c-9ead-09aa8992da4b"


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


Answer = Callable[[web.Request], web.StreamResponse]


class Replay:
    """Answers each ``(method, path)`` with the next of its recorded answers (the last one repeats)."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], list[Answer]] = {}
        self.calls: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.bodies: list[Any] = []

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.answers[(method, path)] = list(answers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((request.method, request.path, request.headers.get("Authorization")))
        if request.can_read_body and request.content_type == "application/json":
            self.bodies.append(await request.json())
        queue = self.answers.get((request.method, request.path))
        if not queue:
            return web.json_response({"title": "Not Found", "status": 404, "detail": "Not Found"}, status=404)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer(request)  # (``lost`` drops the connection instead)


def body(status: int, name: str | None = None, data: Any = None) -> Answer:
    return lambda _: web.json_response(recorded(name) if name else data, status=status)


def lost(request: web.Request) -> web.StreamResponse:
    """DigiSign got the request, but its answer never comes back (the connection drops)."""
    assert request.transport is not None
    request.transport.abort()
    raise asyncio.CancelledError


def token(_: web.Request) -> web.StreamResponse:
    return web.json_response(recorded("sdk-2020/auth_token.json"))  # {"token", "expiresAt": <int>}


@pytest.fixture
def replay() -> Replay:
    r = Replay()
    r.on("POST", "/api/auth-token", token)
    return r


@pytest.fixture
def clock() -> FrozenClock:
    # the recorded token (expiresAt 1596114005) is good for an hour from here
    return FrozenClock(datetime(2020, 7, 30, 12, 0, tzinfo=UTC))


@pytest.fixture
async def client(replay: Replay, clock: FrozenClock) -> AsyncIterator[DigiSignClient]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", replay.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def no_sleep(_: float) -> None:
        return None

    c = DigiSignClient(f"http://127.0.0.1:{port}", "ak", "sk", clock=clock.now, sleep=no_sleep, timeout_seconds=5)
    await c.start()
    yield c
    await c.close()
    await runner.cleanup()


@pytest.fixture
def provider(client: DigiSignClient) -> DigiSignProvider:
    return DigiSignProvider(client, verify_signature=verify_inbound)


def _envelope(**extra: Any) -> RemoteEnvelope:
    return RemoteEnvelope(
        envelope_id="01a20000-0000-7000-8000-00000000000a", name="Smlouva", message=None, language="cs",
        expires_at=datetime(2020, 8, 6, 12, 0, tzinfo=UTC), documents=[("smlouva.pdf", make_pdf())],
        signers=[RemoteSigner("s-1", "Jana Nováková", "jana@example.cz", "+420601123456", 1)], **extra,
    )


# --------------------------------------------------------------------------- token and errors


async def test_the_legacy_token_with_an_int_expires_at_is_used_until_five_minutes_before_it(
    client: DigiSignClient, replay: Replay, clock: FrozenClock
) -> None:
    """C13: ``{"token": "YourSecretToken", "expiresAt": 1596114005}`` (the SDK fixture)."""
    replay.on("GET", "/api/account/me", body(200, "sdk-2020/account.json"))
    assert (await client.call("GET", "/api/account/me"))["email"] == "hans@digital.cz"
    await client.call("GET", "/api/account/me")
    assert [c for c in replay.calls if c[1] == "/api/auth-token"] == [("POST", "/api/auth-token", None)]
    assert replay.calls[-1][2] == "Bearer YourSecretToken"
    clock.set(datetime.fromtimestamp(1596114005 - 299, UTC))  # within the 5-minute margin: a fresh token
    await client.call("GET", "/api/account/me")
    assert len([c for c in replay.calls if c[1] == "/api/auth-token"]) == 2


async def test_the_real_401_body_gets_a_fresh_token_and_the_call_again(
    client: DigiSignClient, replay: Replay
) -> None:
    """C14: ``{"error": "Bearer token is not a JWT."}`` — only the status is read."""
    replay.on("GET", "/api/account/me", body(401, "real-401-not-a-jwt.json"), body(200, "sdk-2020/account.json"))
    assert (await client.call("GET", "/api/account/me"))["status"] == "active"
    assert len([c for c in replay.calls if c[1] == "/api/auth-token"]) == 2
    replay.on("GET", "/api/account/me", body(401, "real-401-not-a-jwt.json"))
    with pytest.raises(ProviderError, match=r"401 .*Bearer token is not a JWT"):
        await client.call("GET", "/api/account/me")


async def test_the_recorded_400_becomes_our_field_path_with_the_czech_text(
    provider: DigiSignProvider, replay: Replay
) -> None:
    replay.on("GET", "/api/envelopes", body(200, data={"items": [], "count": 0, "page": 1, "itemsPerPage": 100}))
    replay.on("POST", "/api/envelopes", body(201, data={"id": ENVELOPE, "status": "draft"}))
    replay.on("POST", "/api/files", body(201, "sdk-2020/file.json"))
    replay.on("POST", f"/api/envelopes/{ENVELOPE}/documents", body(201, data={"id": DOCUMENT}))
    replay.on("POST", f"/api/envelopes/{ENVELOPE}/recipients", body(400, "sdk-400-validation.json"))
    replay.on("DELETE", f"/api/envelopes/{ENVELOPE}", lambda _: web.Response(status=204))
    with pytest.raises(ValidationFailedError) as caught:
        await provider.prepare(_envelope())
    assert caught.value.errors == [
        {"field": "signers[0].email", "message": "DigiSign: Tato hodnota nesmí být prázdná."}]
    assert ("DELETE", f"/api/envelopes/{ENVELOPE}") in [c[:2] for c in replay.calls]  # the draft removed
    upload = next(b for b in replay.bodies if isinstance(b, dict) and "file" in b)
    assert upload["file"] == "/api/files/b8097043-a50d-4e01-8e6f-beaeac5eb0b2"  # the recorded upload's id as IRI


async def test_a_state_refusal_shaped_as_the_recorded_violations_is_invalid_state(
    provider: DigiSignProvider, replay: Replay
) -> None:
    """C16: ``_actions.resend.violations`` of the recorded tag — no ``propertyPath`` — as a 400."""
    violations = recorded("sdk-2020/envelope_tag.json")["recipient"]["_actions"]["resend"]["violations"]
    replay.on("POST", f"/api/envelopes/{ENVELOPE}/recipients/{RECIPIENT}/resend",
              body(400, data={"title": "Validation Failed", "detail": violations[0]["title"],
                              "violations": violations}))
    with pytest.raises(InvalidStateError) as caught:
        await provider.remind(ENVELOPE, RECIPIENT)
    assert caught.value.status == 409 and caught.value.code == "invalid_state"
    detail = caught.value.detail
    assert 'EnvelopeRecipient status must be one of "sent", "delivered", "nonDelivered", "signed"' in detail
    assert 'Envelope status must be one of "sent", "completed"' in caught.value.detail


# --------------------------------------------------------------------------- reading back (C5)


async def test_an_upload_answer_is_read_as_recorded(client: DigiSignClient, replay: Replay) -> None:
    replay.on("POST", "/api/files", body(201, "sdk-2020/file.json"))
    file = await client.upload("dummy.pdf", make_pdf())
    assert (file["id"], file["sha1Checksum"]) == ("b8097043-a50d-4e01-8e6f-beaeac5eb0b2",
                                                  "6490304685c1cab33072adc5a4a6ad471029150d")


async def test_a_lost_tag_answer_is_found_in_the_recorded_tag_list_not_posted_twice(
    provider: DigiSignProvider, replay: Replay
) -> None:
    """The recorded list embeds the tag's recipient and document (not IRIs); each is matched by id."""
    replay.on("POST", f"/api/envelopes/{ENVELOPE}/tags", lost)
    replay.on("GET", f"/api/envelopes/{ENVELOPE}/tags", body(200, "sdk-2020/envelope_tags.json"))
    iri = f"/api/envelopes/{ENVELOPE}"
    found = await provider._post(f"{iri}/tags", {"type": "signature", "document": f"{iri}/documents/{DOCUMENT}",
                                                 "recipient": f"{iri}/recipients/{RECIPIENT}", "page": 1,
                                                 "xPosition": 1, "yPosition": 1},
                                 lambda: _tag_in_list(provider, iri))
    assert found["id"] == "1dae4051-8ea7-4267-b12d-566a3e767d2a"
    assert [c[:2] for c in replay.calls].count(("POST", f"{iri}/tags")) == 1


async def _tag_in_list(provider: DigiSignProvider, iri: str) -> dict[str, Any] | None:
    from adapters.providers.digisign.provider import _id_of

    return next((t for t in await provider._items(f"{iri}/tags")
                 if _id_of(t.get("recipient")) == RECIPIENT and _id_of(t.get("document")) == DOCUMENT
                 and (t["page"], t["xPosition"], t["yPosition"]) == (1, 1, 1)), None)


async def test_reminders_after_sending_read_back_from_the_recorded_list_and_a_refused_type_is_noted(
    provider: DigiSignProvider, replay: Replay
) -> None:
    """C2/C5: ``toSignAfterSent`` (the recorded notification, 2 days) is answered, then lost: the recorded
    list shows it, so it is not posted again; ``toSignBeforeExpires`` is refused with the recorded 400."""
    iri = f"/api/envelopes/{ENVELOPE}"

    def answer(request: web.Request) -> web.StreamResponse:
        kind = replay.bodies[-1]["type"]
        if kind == "toSignBeforeExpires":
            return web.json_response(recorded("sdk-400-validation.json"), status=400)
        return lost(request)

    replay.on("POST", f"{iri}/notifications", answer)
    replay.on("GET", f"{iri}/notifications", body(200, "sdk-2020/envelope_notifications.json"))
    notes = await provider._reminders(iri, _envelope(reminder_days_before_expiry=[1], reminder_every_days=2))
    posted = [b for b in replay.bodies if isinstance(b, dict) and "days" in b]
    assert posted == [{"type": "toSignBeforeExpires", "days": 1}, {"type": "toSignAfterSent", "days": 2}]
    assert [n.type for n in notes] == ["envelope.provider_reminders_refused"]
    assert notes[0].data["refused"] == [{"type": "toSignBeforeExpires", "days": 1}]


async def test_a_lost_send_answer_is_followed_by_a_read_not_a_second_send(
    provider: DigiSignProvider, replay: Replay
) -> None:
    replay.on("GET", f"/api/envelopes/{ENVELOPE}", body(200, data={"id": ENVELOPE, "status": "draft"}),
              body(200, data={"id": ENVELOPE, "status": "sent", "validTo": "2020-08-06T14:00:00+02:00"}))
    replay.on("POST", f"/api/envelopes/{ENVELOPE}/send", lost)
    assert await provider.send(ENVELOPE, datetime(2020, 8, 6, 12, 0, tzinfo=UTC)) == []
    assert [c[:2] for c in replay.calls].count(("POST", f"/api/envelopes/{ENVELOPE}/send")) == 1


async def test_a_5xx_to_a_post_is_not_repeated_but_to_a_get_it_is(client: DigiSignClient, replay: Replay) -> None:
    replay.on("POST", "/api/envelopes", body(503, data={"title": "Service Unavailable"}))
    with pytest.raises(ProviderError, match="may or may not have taken effect"):
        await client.call("POST", "/api/envelopes", json={"name": "x"})
    assert [c[:2] for c in replay.calls].count(("POST", "/api/envelopes")) == 1
    replay.on("GET", "/api/account/me", body(503, data={}), body(200, "sdk-2020/account.json"))
    assert (await client.call("GET", "/api/account/me"))["status"] == "active"


# --------------------------------------------------------------------------- real webhooks


@pytest.mark.parametrize("name, event, envelope", [
    ("real-2024-12-envelopeSent.json", "envelopeSent", "0193b7bc-1797-70f6-a095-231c750d3487"),
    ("real-2024-12-envelopeCompleted.json", "envelopeCompleted", "0193b1df-239d-7260-b479-111da9ddfbac"),
    ("real-2024-12-envelopeDeclined.json", "envelopeDeclined", "0193bc3b-46f0-73fa-8d73-c9f0452a08ca"),
])
def test_the_real_webhook_bodies_are_read_and_their_id_is_the_dedup_key(
    provider: DigiSignProvider, name: str, event: str, envelope: str
) -> None:
    raw = (FIXTURES / "webhooks" / name).read_bytes()  # verified over these exact bytes, never re-serialised
    payload = json.loads(raw)
    now = datetime.fromisoformat(payload["time"])
    header = sign_inbound("whsec-of-this-hook", int(now.timestamp()), raw)  # the recorded bodies are unsigned
    parsed = provider.parse_webhook({"Signature": header}, raw, now, ["another-hook", "whsec-of-this-hook"])
    assert parsed == InboundEvent(event_id=payload["id"], envelope_ref=envelope, type=event)
    from esign_gateway.ports import InvalidWebhook

    with pytest.raises(InvalidWebhook):
        provider.parse_webhook({"Signature": header}, raw, now + timedelta(seconds=301), ["whsec-of-this-hook"])
    with pytest.raises(InvalidWebhook):
        provider.parse_webhook({"Signature": header}, raw.replace(b'"', b"'", 1), now, ["whsec-of-this-hook"])


async def test_a_real_webhook_delivered_twice_is_taken_in_once(
    provider: DigiSignProvider, container: Any, clock: FrozenClock
) -> None:
    """Through the core's ``accept_webhook``: the event id of the real body is the dedup key."""
    from esign_gateway.services.remote import RemoteCeremonyService, WebhookSecrets

    raw = (FIXTURES / "webhooks" / "real-2024-12-envelopeCompleted.json").read_bytes()
    moment = datetime.fromisoformat(json.loads(raw)["time"])
    clock.set(moment)

    async def load(_: str) -> list[str]:
        return ["whsec-of-this-hook"]

    service = RemoteCeremonyService(clock=clock, providers={"digisign": provider}, store=container.store,
                                    webhook_secrets=WebhookSecrets(clock=clock, load=load))
    headers = {"Signature": sign_inbound("whsec-of-this-hook", int(moment.timestamp()), raw)}
    assert await service.accept_webhook("digisign", headers, raw) == "unknown"  # not one of ours: logged, kept
    assert await service.accept_webhook("digisign", headers, raw) == "duplicate"


def test_digisign_invalid_of_the_recorded_400_names_its_field() -> None:
    data = recorded("sdk-400-validation.json")
    exc = DigiSignInvalid([(v["propertyPath"], v["title"]) for v in data["violations"]], data["detail"])
    assert not exc.is_state and exc.text == "Tato hodnota nesmí být prázdná."
