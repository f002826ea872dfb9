"""The development outbox page exists only in dev, and escapes what it shows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.email.outbox import OutboxEmailSender
from adapters.sms.outbox import OutboxSmsSender
from esign_gateway.bootstrap import build_container
from esign_gateway.config import Settings
from esign_gateway.http.app import create_app
from esign_gateway.ports import OutgoingEmail, OutgoingSms
from tests.conftest import T0
from tests.fakes import FrozenClock


async def test_outbox_page_lists_newest_first_and_escapes(aiohttp_client: Callable[..., Any], tmp_path: Path,
                                                          shared_parts: dict[str, Any]) -> None:
    settings = Settings(env="dev", data_dir=tmp_path, embedded_worker=False)
    clock = FrozenClock(T0)
    email = OutboxEmailSender(settings.outbox_dir / "email", sender="noreply@esign.example", clock=clock)
    sms = OutboxSmsSender(settings.outbox_dir / "sms", clock=clock)
    await email.send(OutgoingEmail(to="a@example.cz", subject="první", text="<b>x</b> https://s.test/sign/one",
                                   html="<p>x</p>"))
    clock.advance(seconds=1)
    await email.send(OutgoingEmail(to="b@example.cz", subject="druhý", text="https://s.test/sign/two", html="<p/>"))
    await sms.send(OutgoingSms(to="+420601123456", text="Kod 123456"))
    from tests.conftest import _Shared

    container = build_container(settings, clock=clock, providers={"local": _Shared(shared_parts["provider"])},
                                inspector=_Shared(shared_parts["inspector"]))
    app = create_app(container, run_worker=False)
    app.cleanup_ctx.clear()  # the page needs no database
    client = await aiohttp_client(app)
    data = await (await client.get("/dev/outbox.json")).json()
    assert [e["to"] for e in data["emails"]] == ["b@example.cz", "a@example.cz"]
    assert data["emails"][1]["links"] == ["https://s.test/sign/one"]
    assert data["sms"][0]["text"] == "Kod 123456"
    html = await (await client.get("/dev/outbox")).text()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and '<a href="https://s.test/sign/one">' in html


async def test_outbox_page_is_absent_outside_dev(api: Any) -> None:
    assert (await api.get("/dev/outbox")).status == 404
