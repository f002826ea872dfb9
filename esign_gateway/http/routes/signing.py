"""The signer's side: JSON API under /api/sign/{token} and the server-rendered page /sign/{token}.

The page works without JavaScript: plain forms post to /sign/{token}/… and redirect back
(POST-redirect-GET) with a short status word in the query string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from esign_gateway.domain.masking import mask_phone
from esign_gateway.errors import GatewayError, GoneError, ValidationFailedError
from esign_gateway.services.ceremony import Client, SignerView

from ..bodies import read_json
from ..keys import CONTAINER
from ..problems import from_validation_error
from ..schemas import CodeSentOut, DeclineIn, SignerDocumentOut, SignerViewOut, SignIn
from .envelopes import attachment

__all__ = ["routes"]

routes = web.RouteTableDef()
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent.parent / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)


def _client(request: web.Request) -> Client:
    return Client(ip=request.remote, user_agent=request.headers.get("User-Agent", "")[:512] or None)


def _view_out(view: SignerView, token: str) -> SignerViewOut:
    env, signer = view.envelope, view.signer
    return SignerViewOut(
        envelope_id=env.id, envelope_name=env.name, sender=view.sender_name, message=env.message,
        signer_name=signer.name, phone=mask_phone(signer.phone), status=signer.status.value,
        envelope_status=env.status.value, expires_at=env.expires_at, language=env.language,
        documents=[
            SignerDocumentOut(id=d.id, name=d.name, pages=d.pages, url=f"/api/sign/{token}/documents/{d.id}")
            for d in env.documents
        ],
    )


# ------------------------------------------------------------------------------ JSON API


@routes.get("/api/sign/{token}")
async def api_view(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    view = await request.app[CONTAINER].ceremony.view(token, _client(request))
    return web.Response(text=_view_out(view, token).model_dump_json(), content_type="application/json")


@routes.get("/api/sign/{token}/documents/{document_id}")
async def api_document(request: web.Request) -> web.Response:
    name, data = await request.app[CONTAINER].ceremony.document(request.match_info["token"],
                                                               request.match_info["document_id"])
    disposition = "attachment" if request.query.get("download") else "inline"
    safe = name.encode("ascii", "replace").decode().replace('"', "'")
    return web.Response(body=data, content_type="application/pdf",
                        headers={"Content-Disposition": f'{disposition}; filename="{safe}"'})


@routes.post("/api/sign/{token}/code")
async def api_code(request: web.Request) -> web.Response:
    sent = await request.app[CONTAINER].ceremony.request_code(request.match_info["token"], _client(request))
    out = CodeSentOut(sent_to=sent.sent_to, expires_in=sent.expires_in, resend_after=sent.resend_after)
    return web.Response(status=202, text=out.model_dump_json(), content_type="application/json")


@routes.post("/api/sign/{token}/sign")
async def api_sign(request: web.Request) -> web.Response:
    body = SignIn.model_validate(await read_json(request, empty={}))
    env = await request.app[CONTAINER].ceremony.sign(request.match_info["token"], body.code, body.agree,
                                                    _client(request))
    return web.json_response({"status": "signed", "envelope_status": env.status.value})


@routes.post("/api/sign/{token}/decline")
async def api_decline(request: web.Request) -> web.Response:
    body = DeclineIn.model_validate(await read_json(request, empty={}))
    env = await request.app[CONTAINER].ceremony.decline(request.match_info["token"], body.reason, _client(request))
    return web.json_response({"status": "declined", "envelope_status": env.status.value})


# ------------------------------------------------------------------------------ HTML page

_TEXT = {
    "cs": {
        "title": "Podpis dokumentů", "from": "Žádost od", "docs": "Dokumenty", "expires": "Platnost do",
        "send_code": "Poslat SMS kód", "code_label": "SMS kód (6 číslic)", "agree": "Souhlasím s podpisem dokumentů",
        "sign": "Podepsat", "decline": "Odmítnout podpis", "reason": "Důvod odmítnutí", "phone": "Kód pošleme na",
        "envelope_id": "ID obálky", "signed": "Podepsáno. Děkujeme.", "declined": "Podpis jste odmítli.",
        "code_sent": "Kód byl odeslán.", "waiting": "Čekáme na podpis ostatních.", "open": "Otevřít",
    },
    "sk": {
        "title": "Podpis dokumentov", "from": "Žiadosť od", "docs": "Dokumenty", "expires": "Platnosť do",
        "send_code": "Poslať SMS kód", "code_label": "SMS kód (6 číslic)", "agree": "Súhlasím s podpisom dokumentov",
        "sign": "Podpísať", "decline": "Odmietnuť podpis", "reason": "Dôvod odmietnutia", "phone": "Kód pošleme na",
        "envelope_id": "ID obálky", "signed": "Podpísané. Ďakujeme.", "declined": "Podpis ste odmietli.",
        "code_sent": "Kód bol odoslaný.", "waiting": "Čakáme na podpis ostatných.", "open": "Otvoriť",
    },
    "en": {
        "title": "Sign documents", "from": "Request from", "docs": "Documents", "expires": "Valid until",
        "send_code": "Send SMS code", "code_label": "SMS code (6 digits)", "agree": "I agree to sign the documents",
        "sign": "Sign", "decline": "Decline to sign", "reason": "Reason for declining", "phone": "We send the code to",
        "envelope_id": "Envelope ID", "signed": "Signed. Thank you.", "declined": "You declined to sign.",
        "code_sent": "The code has been sent.", "waiting": "Waiting for the other signers.", "open": "Open",
    },
}


def _page(template: str, status: int = 200, **ctx: Any) -> web.Response:
    lang = ctx.get("lang", "cs")
    html = _templates.get_template(template).render(t=_TEXT.get(lang, _TEXT["cs"]), **ctx)
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")


_DEAD_LINK = {
    "cs": {"expired": "Platnost odkazu k podpisu vypršela.", "cancelled": "Odesílatel žádost o podpis zrušil.",
           "completed": "Dokumenty již podepsaly všechny strany. Podepsanou kopii Vám zašle odesílatel.",
           "declined": "Podpis byl odmítnut; žádost je uzavřena.", "not_found": "Tento odkaz k podpisu neznáme.",
           "download_expired": "Odkaz ke stažení vypršel nebo je neplatný. Požádejte odesílatele o kopii.",
           "purged": "Dokumenty této obálky už nejsou archivovány."},
    "sk": {"expired": "Platnosť odkazu na podpis vypršala.", "cancelled": "Odosielateľ žiadosť o podpis zrušil.",
           "completed": "Dokumenty už podpísali všetky strany. Podpísanú kópiu Vám pošle odosielateľ.",
           "declined": "Podpis bol odmietnutý; žiadosť je uzavretá.", "not_found": "Tento odkaz na podpis nepoznáme.",
           "download_expired": "Odkaz na stiahnutie vypršal alebo je neplatný. Požiadajte odosielateľa o kópiu.",
           "purged": "Dokumenty tejto obálky už nie sú archivované."},
    "en": {"expired": "This signing link has expired.", "cancelled": "The sender cancelled this signing request.",
           "completed": "All parties have signed. The sender will send you the signed copy.",
           "declined": "Signing was declined; the request is closed.",
           "not_found": "We do not know this signing link.",
           "download_expired": "This download link has expired or is not valid. Ask the sender for a copy.",
           "purged": "The documents of this envelope are no longer archived."},
}


def _error_page(err: GatewayError) -> web.Response:
    lang = str(err.extra.get("language", "cs"))
    reason = str(err.extra.get("reason", err.code))
    detail = _DEAD_LINK.get(lang, _DEAD_LINK["cs"]).get(reason, err.detail)
    return _page("sign_error.html", status=err.status, lang=lang, detail=detail, reason=reason)


@routes.get("/sign/{token}")
async def page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    try:
        view = await request.app[CONTAINER].ceremony.view(token, _client(request))
    except GatewayError as err:
        if request.query.get("notice") == "signed" and err.extra.get("reason") == "completed":
            lang = str(err.extra.get("language", "cs"))
            return _page("sign_error.html", lang=lang, reason="signed_by_you",
                         detail=_DEAD_LINK.get(lang, _DEAD_LINK["cs"])["completed"])
        return _error_page(err)
    return _page("sign.html", lang=view.envelope.language, v=_view_out(view, token), token=token,
                 notice=request.query.get("notice", ""), error=request.query.get("error", ""),
                 left=request.query.get("left", ""))


@routes.post("/sign/{token}/code")
async def page_code(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    try:
        await request.app[CONTAINER].ceremony.request_code(token, _client(request))
    except GatewayError as err:
        if err.status in (404, 410):
            return _error_page(err)
        raise web.HTTPSeeOther(f"/sign/{token}?error={err.code}") from None
    raise web.HTTPSeeOther(f"/sign/{token}?notice=code_sent")


@routes.post("/sign/{token}/sign")
async def page_sign(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    form = await request.post()
    try:
        body = SignIn.model_validate({"code": str(form.get("code", "")).strip() or None,
                                      "agree": form.get("agree") == "yes"})
        await request.app[CONTAINER].ceremony.sign(token, body.code, body.agree, _client(request))
    except GatewayError as err:
        if err.status in (404, 410):
            return _error_page(err)
        left = err.extra.get("attempts_left")
        suffix = f"&left={left}" if left is not None else ""
        raise web.HTTPSeeOther(f"/sign/{token}?error={err.code}{suffix}") from None
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        errors = from_validation_error(exc) if hasattr(exc, "errors") else []  # type: ignore[arg-type]
        field = errors[0]["field"] if errors else "code"
        raise web.HTTPSeeOther(f"/sign/{token}?error=invalid_{field}") from None
    raise web.HTTPSeeOther(f"/sign/{token}?notice=signed")


@routes.post("/sign/{token}/decline")
async def page_decline(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    form = await request.post()
    try:
        env = await request.app[CONTAINER].ceremony.decline(token, str(form.get("reason", "")), _client(request))
    except ValidationFailedError:
        raise web.HTTPSeeOther(f"/sign/{token}?error=reason_required") from None
    except GatewayError as err:
        return _error_page(err)
    return _page("sign_error.html", lang=env.language, detail="", reason="declined_by_you")


@routes.get("/download/{token}")
async def download(request: web.Request) -> web.Response:
    """The signed result, from the time-limited link of the completion e-mail (no API key)."""
    container = request.app[CONTAINER]
    opened = container.notifications.open_download_token(request.match_info["token"])
    if opened is None:
        return _error_page(GoneError("This download link is no longer valid.", extra={"reason": "download_expired"}))
    try:
        env = await container.archive.load(opened[0], None)
        name, ctype, data = await container.envelopes.result_of(env)
    except GatewayError as err:
        return _error_page(err)
    return web.Response(body=data, content_type=ctype, headers={"Content-Disposition": attachment(name)})
