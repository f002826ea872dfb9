"""/dev/outbox: the development outbox (e-mails and SMS written as files). Mounted only in dev."""

from __future__ import annotations

import asyncio
import json
import re
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiohttp import web
from markupsafe import Markup, escape

from esign_gateway.http.openapi import PUBLIC, Media, doc

__all__ = ["dev_outbox_routes"]

_LINK = re.compile(r"https?://[^\s<>\"']+")
_LIMIT = 100


def _read(outbox: Path) -> dict[str, list[dict[str, Any]]]:
    emails = []
    for f in sorted((outbox / "email").glob("*.eml"), reverse=True)[:_LIMIT]:
        msg = message_from_bytes(f.read_bytes(), policy=policy.default)
        part = msg.get_body(("plain",))
        text = part.get_content() if part is not None else ""  # type: ignore[union-attr]
        emails.append({"file": f.name, "to": str(msg["To"]), "subject": str(msg["Subject"]), "date": str(msg["Date"]),
                       "text": text, "links": _LINK.findall(text)})
    sms = []
    for f in sorted((outbox / "sms").glob("*.json"), reverse=True)[:_LIMIT]:
        sms.append({"file": f.name, **json.loads(f.read_text())})
    return {"emails": emails, "sms": sms}


def _linkify(text: str) -> Markup:
    out, last = [], 0
    for m in _LINK.finditer(text):
        out.append(escape(text[last:m.start()]))
        out.append(Markup('<a href="{0}">{0}</a>').format(m.group(0)))
        last = m.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def dev_outbox_routes(outbox_dir: Path) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/dev/outbox.json")
    @doc("Development: the e-mails and SMS sent", "Development", auth=PUBLIC,
         response=Media("application/json", "Newest first; only with `ESIGN_ENV=dev`."))
    async def outbox_json(_: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(_read, outbox_dir))

    @routes.get("/dev/outbox")
    @doc("Development: the outbox as a page", "Development", auth=PUBLIC, response=Media("text/html", "The page."))
    async def outbox_page(_: web.Request) -> web.Response:
        data = await asyncio.to_thread(_read, outbox_dir)
        rows = [Markup("<h2>SMS</h2>")]
        for s in data["sms"]:
            rows.append(Markup("<article><p><b>{}</b> · {}</p><pre>{}</pre></article>").format(
                s["to"], s["sent_at"], s["text"]))
        rows.append(Markup("<h2>E-mail</h2>"))
        for e in data["emails"]:
            rows.append(Markup("<article><p><b>{}</b> · {}<br>{}</p><pre>{}</pre></article>").format(
                e["to"], e["date"], e["subject"], _linkify(e["text"])))
        html = Markup(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>Dev outbox</title>"
            "<meta name=viewport content='width=device-width, initial-scale=1'></head>"
            "<body><h1>Development outbox</h1><p>Newest first. Only in ESIGN_ENV=dev.</p>{}</body></html>"
        ).format(Markup("").join(rows))
        return web.Response(text=str(html), content_type="text/html", headers={"Cache-Control": "no-store"})

    return routes
