"""The signer's page ``/sign/{token}``: server-rendered, whole flow without JavaScript.

Plain forms post to ``/sign/{token}/…`` and redirect back (POST-redirect-GET) with a status word;
every state is a real page in the signer's language (the envelope's, switchable with ``?lang=``).
Forms carry a CSRF token bound to the link (HMAC with the gateway's secret pepper) and every
state-changing request from a browser must come from our own origin. ``/static/sign.js`` only
adds a countdown to the "send a new code" button.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from esign_gateway.domain.masking import mask_phone
from esign_gateway.domain.otp import RESEND_INTERVAL
from esign_gateway.errors import ForbiddenError, GatewayError, MalformedRequestError, ValidationFailedError
from esign_gateway.services.ceremony import Client, SignerView

from ..bodies import read_form
from ..keys import CONTAINER
from ..openapi import SIGNER_LINK, Media, Param, doc
from .envelopes import attachment
from .signer_texts import DEAD_LINK, ERRORS, LANGUAGES, NOTICES, TEXT

__all__ = ["check_origin", "routes"]

routes = web.RouteTableDef()
PRAGUE = ZoneInfo("Europe/Prague")
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent.parent / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)


def client_of(request: web.Request) -> Client:
    return Client(ip=request.remote, user_agent=request.headers.get("User-Agent", "")[:512] or None)


def _lang(request: web.Request, default: str) -> str:
    asked = request.query.get("lang") or ""
    return asked if asked in LANGUAGES else (default if default in LANGUAGES else "cs")


def _csrf(request: web.Request, token: str) -> str:
    pepper = request.app[CONTAINER].ceremony.pepper
    return hmac.new(pepper, f"csrf:{token}".encode(), hashlib.sha256).hexdigest()


def check_origin(request: web.Request) -> None:
    """A browser's cross-site POST names its origin: only ours may change anything."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        # no Origin (not a browser, or an old one) or "null" (our own pages send no referrer, so the
        # browser hides even our origin): the CSRF token, or the JSON content type, decides
        return
    public = urlsplit(request.app[CONTAINER].settings.base_url)
    mine = {f"{public.scheme}://{public.netloc}", f"{request.scheme}://{request.host}"}
    if origin not in mine:
        raise ForbiddenError("This request did not come from the signing page.", extra={"reason": "origin"})


async def _checked_form(request: web.Request, token: str) -> Any:
    check_origin(request)
    form = await read_form(request)
    if not hmac.compare_digest(str(form.get("csrf", "")), _csrf(request, token)):
        raise ForbiddenError("The form has expired; open the page again.", extra={"reason": "csrf"})
    return form


def _when(moment: datetime | None) -> dict[str, str]:
    if moment is None:
        return {"local": "", "utc": "", "iso": ""}
    local = moment.astimezone(PRAGUE)
    return {"local": f"{local:%d.%m.%Y %H:%M}", "utc": f"{moment:%Y-%m-%d %H:%M} UTC", "iso": moment.isoformat()}


def _page(template: str, lang: str, status: int = 200, **ctx: Any) -> web.Response:
    html = _templates.get_template(template).render(t=TEXT[lang], lang=lang, languages=LANGUAGES, **ctx)
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")


async def _dead(request: web.Request, err: GatewayError, token: str | None = None) -> web.Response:
    """A dead or unknown link as a page, never a stack trace: why, and what the signer can do. A
    completed envelope's page offers the signer's one download link while it is live."""
    lang = _lang(request, str(err.extra.get("language", "cs")))
    reason = str(err.extra.get("reason", err.code))
    download = None
    if reason == "completed" and err.extra.get("envelope_id") and err.extra.get("signer_id"):
        ceremony = request.app[CONTAINER].ceremony
        live = await ceremony.download_link(str(err.extra["envelope_id"]), str(err.extra["signer_id"]))
        download = f"/download/{live}" if live else None
    detail = ERRORS[lang]["csrf"] if reason in ("origin", "csrf") else DEAD_LINK[lang].get(reason, err.detail)
    thanks = reason == "completed" and request.query.get("notice") == "signed"  # right after the last signature
    return _page("sign_error.html", lang, status=200 if thanks else err.status, detail=detail, reason=reason,
                 download=download, thanks=thanks,
                 here=f"/sign/{token}" if token and reason in ("csrf", "origin") else None)


def _back(token: str, lang: str, **params: Any) -> web.HTTPSeeOther:
    query = urlencode({**{k: v for k, v in params.items() if v is not None}, "lang": lang})
    return web.HTTPSeeOther(f"/sign/{token}?{query}")


def _error_word(err: GatewayError) -> str:
    if err.code == "code_rejected":
        for flag in ("auth_failed", "code_dead", "code_expired"):
            if err.extra.get(flag):
                return flag
    return err.code


@routes.get("/sign/{token}")
@doc("The signer's page", "Signer page", auth=SIGNER_LINK,
     response=Media("text/html", "The page (cs/sk/en: `?lang=`); a dead link answers 404/410 with a page that "
                    "says why."),
     also={404: Media("text/html", "Unknown link."), 410: Media("text/html", "The link is no longer valid.")},
     params=(Param("lang", schema={"type": "string", "enum": ["cs", "sk", "en"]}),))
async def page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    try:
        view: SignerView = await request.app[CONTAINER].ceremony.view(token, client_of(request))
    except GatewayError as err:
        return await _dead(request, err, token)
    env, signer = view.envelope, view.signer
    lang = _lang(request, env.language)
    notice = request.query.get("notice", "")
    error = request.query.get("error", "")
    wait = request.query.get("wait", "")
    if notice == "code_sent" and not wait:
        wait = str(int(RESEND_INTERVAL.total_seconds()))
    state = {
        "notified": "act", "viewed": "act", "verified": "act", "signed": "signed", "auth_failed": "auth_failed",
        "declined": "declined",
    }.get(signer.status.value, "closed")
    if state == "auth_failed":
        error = "auth_failed"  # whenever the page is opened again, not only right after the last try
    message = ERRORS[lang].get(error, ERRORS[lang]["unknown"]) if error else ""
    message = message.format(left=request.query.get("left", "?"), wait=wait or "30", sender=view.sender_name)
    return _page(
        "sign.html", lang, token=token, state=state, csrf=_csrf(request, token), notice=NOTICES[lang].get(notice, ""),
        notice_word=notice, error=message, error_word=error, wait=wait if wait.isdigit() else "",
        sender=view.sender_name, envelope_name=env.name, envelope_id=env.id, signer_name=signer.name,
        message=env.message, phone=mask_phone(signer.phone), expires=_when(env.expires_at),
        waiting_for_others=env.status.value == "sent",
        documents=[{"id": d.id, "name": d.name, "pages": d.pages, "url": f"/api/sign/{token}/documents/{d.id}",
                    "place": d.placements.get(signer.id)} for d in env.documents],
    )


FormAction = Callable[[str, Any, str], Awaitable[web.StreamResponse]]


async def _form_post(
    request: web.Request, act: FormAction, *, back_with: dict[str, str] | None = None
) -> web.StreamResponse:
    """A form post from the page: origin and CSRF checked, then ``act(token, form, lang)``. A dead
    link (403/404/410) is a page; with ``back_with`` any other refusal goes back to the page with
    its reason and those query fields from the error (``{"wait": "retry_after"}``), without it
    every refusal is a page."""
    token = request.match_info["token"]
    lang = "cs"
    try:
        form = await _checked_form(request, token)
        lang = str(form.get("lang", "cs"))
        return await act(token, form, lang)
    except MalformedRequestError:
        raise  # a body no browser sends (no boundary, an unknown charset): a problem, not a page
    except GatewayError as err:
        if back_with is None or err.status in (403, 404, 410):
            return await _dead(request, err, token)
        extra = {field: err.extra.get(key) for field, key in back_with.items()}
        raise _back(token, lang, error=_error_word(err), **extra) from None


@routes.post("/sign/{token}/code")
@doc("The page's form: send the SMS code", "Signer page", auth=SIGNER_LINK, status=303,
     response=Media(None, "Back to the page with a notice or an error.", ("Location",)),
     also={403: Media("text/html", "The form's CSRF token or origin is wrong."),
           404: Media("text/html", "Unknown link."), 410: Media("text/html", "The link is no longer valid.")},
     errors=(MalformedRequestError,))
async def page_code(request: web.Request) -> web.StreamResponse:
    async def act(token: str, form: Any, lang: str) -> web.StreamResponse:
        await request.app[CONTAINER].ceremony.request_code(token, client_of(request))
        raise _back(token, lang, notice="code_sent")

    return await _form_post(request, act, back_with={"wait": "retry_after"})


@routes.post("/sign/{token}/sign")
@doc("The page's form: sign", "Signer page", auth=SIGNER_LINK, status=303,
     response=Media(None, "Back to the page with a notice or an error.", ("Location",)),
     also={403: Media("text/html", "The form's CSRF token or origin is wrong."),
           404: Media("text/html", "Unknown link."), 410: Media("text/html", "The link is no longer valid.")},
     errors=(MalformedRequestError,))
async def page_sign(request: web.Request) -> web.StreamResponse:
    async def act(token: str, form: Any, lang: str) -> web.StreamResponse:
        code = str(form.get("code", "")).strip()
        if not (len(code) == 6 and code.isdigit()):
            raise _back(token, lang, error="invalid_code")
        if form.get("agree") != "yes":
            raise _back(token, lang, error="agree_required")
        await request.app[CONTAINER].ceremony.sign(token, code, True, client_of(request))
        raise _back(token, lang, notice="signed")

    return await _form_post(request, act, back_with={"left": "attempts_left"})


@routes.post("/sign/{token}/decline")
@doc("The page's form: decline", "Signer page", auth=SIGNER_LINK, response=Media("text/html", "Declined."),
     also={303: Media(None, "Back to the page with an error.", ("Location",)),
           403: Media("text/html", "The form's CSRF token or origin is wrong."),
           404: Media("text/html", "Unknown link."), 410: Media("text/html", "The link is no longer valid.")},
     errors=(MalformedRequestError,))
async def page_decline(request: web.Request) -> web.StreamResponse:
    async def act(token: str, form: Any, lang: str) -> web.StreamResponse:
        try:
            env = await request.app[CONTAINER].ceremony.decline(token, str(form.get("reason", "")),
                                                                client_of(request))
        except ValidationFailedError:
            raise _back(token, lang, error="reason_required") from None
        return _page("sign_error.html", _lang(request, lang if lang in LANGUAGES else env.language),
                     detail=TEXT[lang if lang in LANGUAGES else "cs"]["declined"], reason="declined_by_you")

    return await _form_post(request, act)


@routes.get("/download/{token}")
@doc("The signer's download of the signed result", "Signer page", auth=SIGNER_LINK,
     response=Media("application/pdf", "The signed PDF (or a ZIP).", ("Content-Disposition",)),
     also={404: Media("text/html", "Unknown link."),
           410: Media("text/html", "The link expired (30 days after completion) or the sender revoked it.")})
async def signer_download(request: web.Request) -> web.Response:
    """The signed result, from the recipient's one link of the completion (the e-mail's, the
    completed page's): 404 for a token never ours, 410 once expired or revoked."""
    container = request.app[CONTAINER]
    try:
        envelope_id = await container.ceremony.open_download(request.match_info["token"])
        env = await container.archive.load(envelope_id, None)
        name, ctype, data = await container.envelopes.result_of(env)
    except GatewayError as err:
        return await _dead(request, err)
    return web.Response(body=data, content_type=ctype, headers={"Content-Disposition": attachment(name)})
