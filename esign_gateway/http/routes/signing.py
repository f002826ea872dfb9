"""The signer's JSON API under /api/sign/{token} (the page is ``signing_page``).

State-changing calls must come from our own origin when a browser makes them; a JSON body needs
``Content-Type: application/json``, which a cross-site form cannot send without a preflight.
"""

from __future__ import annotations

from aiohttp import web

from esign_gateway import errors as err
from esign_gateway.domain.masking import mask_phone
from esign_gateway.errors import UnsupportedMediaTypeError
from esign_gateway.services.ceremony import SignerView

from ..bodies import read_json, render
from ..keys import CONTAINER
from ..openapi import SIGNER_LINK, Media, Param, doc
from ..schemas import CodeIn, CodeSentOut, DeclineIn, PlacementOut, SignedOut, SignerDocumentOut, SignerViewOut, SignIn
from .signing_page import check_origin, client_of

__all__ = ["routes"]

routes = web.RouteTableDef()


async def _json_body(request: web.Request) -> object:
    """Only ``application/json`` (a cross-site page cannot send it without a CORS preflight,
    which we never grant), from no foreign origin."""
    check_origin(request)
    if request.content_type != "application/json":
        raise UnsupportedMediaTypeError("Send a JSON body with 'Content-Type: application/json' (it may be {}).")
    return await read_json(request, empty={})


def _view_out(view: SignerView, token: str, base_url: str) -> SignerViewOut:
    env, signer = view.envelope, view.signer
    return SignerViewOut(
        envelope_id=env.id, envelope_name=env.name, sender=view.sender_name, message=env.message,
        signer_name=signer.name, phone=mask_phone(signer.phone), status=signer.status.value,
        envelope_status=env.status.value, expires_at=env.expires_at, language=env.language,
        documents=[
            SignerDocumentOut(id=d.id, name=d.name, pages=d.pages, url=f"{base_url}/api/sign/{token}/documents/{d.id}",
                              signature=PlacementOut.of(d.id, d.placements[signer.id])
                              if signer.id in d.placements else None)
            for d in env.documents
        ],
    )


# ------------------------------------------------------------------------------ JSON API


_DEAD = (err.NotFoundError, err.GoneError)


@routes.get("/api/sign/{token}")
@doc("What the signer sees", "Signer", auth=SIGNER_LINK, response=SignerViewOut, errors=_DEAD)
async def api_view(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    view = await request.app[CONTAINER].ceremony.view(token, client_of(request))
    return render(_view_out(view, token, request.app[CONTAINER].settings.base_url.rstrip("/")))


@routes.get("/api/sign/{token}/documents/{document_id}")
@doc("A document, for the signer", "Signer", auth=SIGNER_LINK,
     response=Media("application/pdf", "The PDF as it stands.", ("Content-Disposition",)),
     params=(Param("download", description="Any value: as an attachment instead of inline."),), errors=_DEAD)
async def api_document(request: web.Request) -> web.Response:
    name, data = await request.app[CONTAINER].ceremony.document(request.match_info["token"],
                                                               request.match_info["document_id"])
    disposition = "attachment" if request.query.get("download") else "inline"
    safe = name.encode("ascii", "replace").decode().replace('"', "'")
    return web.Response(body=data, content_type="application/pdf", headers={
        "Content-Disposition": f'{disposition}; filename="{safe}"',
        # shown inline on our own signing page (an <object>), framed by nobody else
        "X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "default-src 'none'; frame-ancestors 'self'",
    })


@routes.post("/api/sign/{token}/code")
@doc("Send the SMS code", "Signer", auth=SIGNER_LINK, body=CodeIn, status=202, response=CodeSentOut,
     errors=(*_DEAD, err.UnsupportedMediaTypeError, err.InvalidStateError, err.TooManyRequestsError, err.DeliveryError),
     description="Send `{}` as `application/json`.")
async def api_code(request: web.Request) -> web.Response:
    CodeIn.model_validate(await _json_body(request))  # `{}`: a field would be a client's mistake
    sent = await request.app[CONTAINER].ceremony.request_code(request.match_info["token"], client_of(request))
    out = CodeSentOut(sent_to=sent.sent_to, expires_in=sent.expires_in, resend_after=sent.resend_after)
    return web.Response(status=202, text=out.model_dump_json(), content_type="application/json")


@routes.post("/api/sign/{token}/sign")
@doc("Sign with the SMS code", "Signer", auth=SIGNER_LINK, body=SignIn, response=SignedOut,
     errors=(*_DEAD, err.CodeRejectedError, err.InvalidStateError, err.TooManyRequestsError, err.ProviderError))
async def api_sign(request: web.Request) -> web.Response:
    body = SignIn.model_validate(await _json_body(request))
    env = await request.app[CONTAINER].ceremony.sign(request.match_info["token"], body.code, body.agree,
                                                    client_of(request))
    return render(SignedOut(status="signed", envelope_status=env.status.value))


@routes.post("/api/sign/{token}/decline")
@doc("Decline to sign", "Signer", auth=SIGNER_LINK, body=DeclineIn, response=SignedOut,
     errors=(*_DEAD, err.InvalidStateError))
async def api_decline(request: web.Request) -> web.Response:
    body = DeclineIn.model_validate(await _json_body(request))
    env = await request.app[CONTAINER].ceremony.decline(request.match_info["token"], body.reason, client_of(request))
    return render(SignedOut(status="declined", envelope_status=env.status.value))
