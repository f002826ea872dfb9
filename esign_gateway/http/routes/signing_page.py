"""The signer's page ``/sign/{token}``: server-rendered, whole flow without JavaScript.

Plain forms post to ``/sign/{token}/…`` and redirect back (POST-redirect-GET) with a status word,
to where the next thing to do is (once a code is out the code field has ``autofocus``, which a URL
fragment would switch off; ``#step1`` or ``#decline`` for their errors). Every state is a real
page in the signer's language (the envelope's, switchable with ``?lang=``). The documents are
page images rendered by the server (``page_images``), with this signer's stamp box marked.
Forms carry a CSRF token bound to the link (HMAC with the gateway's secret pepper) and every
state-changing request from a browser must come from our own origin. ``/static/sign.js`` only
adds a countdown to the "send a new code" button.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import jinja2
import structlog
from aiohttp import web

from esign_gateway.domain.envelope import Envelope, Signer
from esign_gateway.domain.masking import mask_phone
from esign_gateway.errors import ForbiddenError, GatewayError, MalformedRequestError, ValidationFailedError
from esign_gateway.ports import PAGE_IMAGE_WIDTHS
from esign_gateway.services.ceremony import Client, SignerView

from ..bodies import read_form
from ..keys import CONTAINER
from ..openapi import SIGNER_LINK, Media, Param, doc
from .branding import page_branding
from .envelopes import attachment
from .signer_texts import DEAD_LINK, ERRORS, LANGUAGES, NOTICES, TEXT

__all__ = ["check_origin", "routes"]

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()
PRAGUE = ZoneInfo("Europe/Prague")
STEP_1_ERRORS = frozenset({"rate_limited", "delivery_failed"})
"""Shown in step 1 (the code's sending); the code's own errors are shown at the code field."""
STEP_2_ERRORS = frozenset({"code_rejected", "code_expired", "code_dead", "invalid_code", "agree_required",
                           "provider_error"})
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
        return {"local": "", "utc": "", "iso": "", "time": ""}
    local = moment.astimezone(PRAGUE)
    return {"local": f"{local:%d.%m.%Y %H:%M}", "utc": f"{moment:%Y-%m-%d %H:%M} UTC", "iso": moment.isoformat(),
            "time": f"{local:%H:%M:%S}"}


async def _documents(request: web.Request, token: str, env: Envelope, signer: Signer) -> list[dict[str, Any]]:
    """Each document with its page images (``srcset`` of every width, the widest as the zoom) and,
    on its page, the box of this signer's stamp in page points (drawn over the image as SVG)."""
    ceremony = request.app[CONTAINER].ceremony
    out = []
    for d in env.documents:
        try:
            sizes = await ceremony.page_sizes(d)
        except Exception as exc:  # a broken pool or an unreadable version: the download still works
            log.warning("page_sizes_failed", document_id=d.id, error=type(exc).__name__)
            sizes = None
        place = d.placements.get(signer.id)
        base = f"/sign/{token}/documents/{d.id}/pages"
        version = d.current_sha256[:16]
        pages = []
        for index, size in enumerate(sizes or ()):
            src = f"{base}/{index + 1}.png?v={version}&w="
            pages.append({
                "number": index + 1, "anchor": f"doc-{d.id}-p{index + 1}",
                "src": f"{src}{PAGE_IMAGE_WIDTHS[1]}", "full": f"{src}{PAGE_IMAGE_WIDTHS[-1]}",
                "srcset": ", ".join(f"{src}{w} {w}w" for w in PAGE_IMAGE_WIDTHS),
                "width": PAGE_IMAGE_WIDTHS[1], "height": round(PAGE_IMAGE_WIDTHS[1] * size.height / size.width),
                "box": f"0 0 {size.width:g} {size.height:g}",
                "place": place if place is not None and place.page == index else None,
            })
        out.append({"id": d.id, "name": d.name, "pages": d.pages, "url": f"/api/sign/{token}/documents/{d.id}",
                    "place": place, "images": pages})
    return out


def _page(template: str, lang: str, status: int = 200, **ctx: Any) -> web.Response:
    html = _templates.get_template(template).render(t=TEXT[lang], lang=lang, languages=LANGUAGES, **ctx)
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")


async def _dead(request: web.Request, err: GatewayError, token: str | None = None) -> web.Response:
    """A dead or unknown link as a page, never a stack trace: why, and what the signer can do. A
    closed link's page names the envelope, the sender and the envelope ID; a completed envelope's
    page shows the signed documents and offers the signer's one download link while it is live."""
    lang = _lang(request, str(err.extra.get("language", "cs")))
    reason = str(err.extra.get("reason", err.code))
    ceremony = request.app[CONTAINER].ceremony
    view = await ceremony.summary(token) if token and err.status in (403, 410) else None
    download = None
    documents: list[dict[str, Any]] = []
    if reason == "completed" and view is not None:
        live = await ceremony.download_link(view.envelope.id, view.signer.id)
        download = f"/download/{live}" if live else None
        documents = await _documents(request, str(token), view.envelope, view.signer)
    if reason == "declined" and view is not None and view.signer.status.value == "declined":
        reason = "declined_by_you"
    detail = (ERRORS[lang]["csrf"] if reason in ("origin", "csrf")
              else TEXT[lang]["declined"] if reason == "declined_by_you"
              else DEAD_LINK[lang].get(reason, err.detail))
    thanks = reason == "completed" and request.query.get("notice") == "signed"  # right after the last signature
    return _page("sign_error.html", lang, status=200 if thanks else err.status, detail=detail, reason=reason,
                 download=download, thanks=thanks, token=token if view is not None else None,
                 here=f"/sign/{token}" if token and reason in ("csrf", "origin") else None,
                 envelope_name=view.envelope.name if view else None, sender=view.sender_name if view else None,
                 envelope_id=view.envelope.id if view else None, documents=documents,
                 **await page_branding(request, view.envelope.tenant_id if view else None))


def _back(token: str, lang: str, *, to: str | None = None, **params: Any) -> web.HTTPSeeOther:
    """Back to the page (GET), at the element ``to`` when the signer's next step is there."""
    query = urlencode({**{k: v for k, v in params.items() if v is not None}, "lang": lang})
    return web.HTTPSeeOther(f"/sign/{token}?{query}" + (f"#{to}" if to else ""))


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
    now = request.app[CONTAINER].clock.now()
    next_code = view.next_code_at if view.next_code_at is not None and view.next_code_at > now else None
    wait = str(math.ceil((next_code - now).total_seconds())) if next_code is not None else ""
    state = {
        "notified": "act", "viewed": "act", "verified": "act", "signed": "signed", "auth_failed": "auth_failed",
        "declined": "declined",
    }.get(signer.status.value, "closed")
    if state == "auth_failed":
        error = "auth_failed"  # whenever the page is opened again, not only right after the last try
    message = ERRORS[lang].get(error, ERRORS[lang]["unknown"]) if error else ""
    message = message.format(left=request.query.get("left", "?"), wait=wait or "30", sender=view.sender_name)
    where = ("step1" if error in STEP_1_ERRORS else "step2" if error in STEP_2_ERRORS
             else "decline" if error == "reason_required" else "top")
    return _page(
        "sign.html", lang, token=token, state=state, csrf=_csrf(request, token), notice=NOTICES[lang].get(notice, ""),
        notice_word=notice, error=message, error_word=error, error_at=where, wait=wait,
        code_sent=_when(view.code_sent_at) if view.code_sent_at else None, next_code=_when(next_code),
        agreed=request.query.get("agree") == "yes",
        sender=view.sender_name, envelope_name=env.name, envelope_id=env.id, signer_name=signer.name,
        message=env.message, phone=mask_phone(signer.phone), expires=_when(env.expires_at),
        waiting_for_others=env.status.value == "sent", documents=await _documents(request, token, env, signer),
        **await page_branding(request, env.tenant_id),
    )


FormAction = Callable[[str, Any, str], Awaitable[web.StreamResponse]]


async def _form_post(
    request: web.Request, act: FormAction, *, back_with: dict[str, str] | None = None, to: str | None = None,
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
        raise _back(token, lang, error=_error_word(err), to=to, **extra) from None


@routes.post("/sign/{token}/code")
@doc("The page's form: send the SMS code", "Signer page", auth=SIGNER_LINK, status=303,
     response=Media(None, "Back to the page with a notice or an error.", ("Location",)),
     also={403: Media("text/html", "The form's CSRF token or origin is wrong."),
           404: Media("text/html", "Unknown link."), 410: Media("text/html", "The link is no longer valid.")},
     errors=(MalformedRequestError,))
async def page_code(request: web.Request) -> web.StreamResponse:
    async def act(token: str, form: Any, lang: str) -> web.StreamResponse:
        await request.app[CONTAINER].ceremony.request_code(token, client_of(request))
        raise _back(token, lang, notice="code_sent")  # the code field has autofocus: the page opens there

    return await _form_post(request, act, back_with={"wait": "retry_after"}, to="step1")


@routes.post("/sign/{token}/sign")
@doc("The page's form: sign", "Signer page", auth=SIGNER_LINK, status=303,
     response=Media(None, "Back to the page with a notice or an error.", ("Location",)),
     also={403: Media("text/html", "The form's CSRF token or origin is wrong."),
           404: Media("text/html", "Unknown link."), 410: Media("text/html", "The link is no longer valid.")},
     errors=(MalformedRequestError,))
async def page_sign(request: web.Request) -> web.StreamResponse:
    async def act(token: str, form: Any, lang: str) -> web.StreamResponse:
        code = str(form.get("code", "")).strip()
        agreed = form.get("agree") == "yes"
        keep = {"agree": "yes" if agreed else None}  # a retry keeps the tick; autofocus finds the code field
        if not (len(code) == 6 and code.isdigit()):
            raise _back(token, lang, error="invalid_code", **keep)
        if not agreed:
            raise _back(token, lang, error="agree_required", **keep)
        try:
            await request.app[CONTAINER].ceremony.sign(token, code, True, client_of(request))
        except GatewayError as err:
            if err.status in (403, 404, 410):
                raise
            raise _back(token, lang, error=_error_word(err), left=err.extra.get("attempts_left"), **keep) from None
        raise _back(token, lang, notice="signed")

    return await _form_post(request, act)


@routes.post("/sign/{token}/decline")
@doc("The page's form: decline", "Signer page", auth=SIGNER_LINK, status=303,
     response=Media(None, "Back to the page: declined, or with an error.", ("Location",)),
     also={403: Media("text/html", "The form's CSRF token or origin is wrong."),
           404: Media("text/html", "Unknown link."), 410: Media("text/html", "The link is no longer valid.")},
     errors=(MalformedRequestError,))
async def page_decline(request: web.Request) -> web.StreamResponse:
    async def act(token: str, form: Any, lang: str) -> web.StreamResponse:
        try:
            env = await request.app[CONTAINER].ceremony.decline(token, str(form.get("reason", "")),
                                                                client_of(request))
        except ValidationFailedError:
            raise _back(token, lang if lang in LANGUAGES else "cs", error="reason_required", to="decline") from None
        raise _back(token, lang if lang in LANGUAGES else env.language, notice="declined")

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
