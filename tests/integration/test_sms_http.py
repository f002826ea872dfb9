"""HttpSmsSender against a small SMS gateway on a real local port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from adapters.sms.http import HttpSmsSender
from esign_gateway.errors import DeliveryError
from esign_gateway.messages import render_code_sms


@pytest.fixture
async def gateway(aiohttp_server: Callable[..., Any]) -> Any:
    state: dict[str, Any] = {"received": [], "answers": []}

    async def handle(request: web.Request) -> web.Response:
        state["received"].append((request.headers.get("Authorization"), await request.json()))
        status = state["answers"].pop(0) if state["answers"] else 202
        return web.json_response({"ok": status < 300}, status=status)

    app = web.Application()
    app.router.add_post("/sms", handle)
    server = await aiohttp_server(app)
    state["url"] = str(server.make_url("/sms"))
    return state


async def test_code_sms_is_posted_with_the_bearer_token_and_fits_one_gsm7_part(gateway: dict[str, Any]) -> None:
    sms = HttpSmsSender(gateway["url"], "tok_123", sender="Dodavatel")
    message = render_code_sms("cs", "+420601123456", "123456", "Smlouva o dílo č. 2026/042 – dodávka serverů",
                              "Dodavatel s.r.o.")
    await sms.send(message)
    ((auth, body),) = gateway["received"]
    assert auth == "Bearer tok_123"
    assert body == {"to": "+420601123456", "text": message.text, "sender": "Dodavatel"}
    assert "123456" in body["text"] and "Smlouva o dilo" in body["text"] and "Dodavatel" in body["text"]
    assert len(body["text"]) <= 160 and body["text"].isascii()  # GSM-7: no diacritics, one part


async def test_a_busy_gateway_is_retried_once_and_a_refusal_is_permanent(gateway: dict[str, Any]) -> None:
    sms = HttpSmsSender(gateway["url"], "tok_123")
    message = render_code_sms("en", "+420601123456", "654321", "Contract", "Supplier Ltd")
    gateway["answers"] = [503]
    await sms.send(message)
    assert len(gateway["received"]) == 2
    gateway["answers"] = [400]
    with pytest.raises(DeliveryError) as refused:
        await sms.send(message)
    assert refused.value.permanent is True
    gateway["answers"] = [503, 503]
    with pytest.raises(DeliveryError) as busy:
        await sms.send(message)
    assert busy.value.permanent is False
