"""A fake DigiSign REST API, written from ``../shared/digisign-api.md`` (not from our adapter).

What it follows (section numbers of the notes; C1–C16 are the corrections of §10):

* §1 ``POST /api/auth-token`` → ``{token, exp, iat}`` (or, ``legacy_token``, the SDK fixture's
  ``{token, expiresAt: <int>}``, C13); every other ``/api`` call needs ``Authorization: Bearer``; a
  token it does not know or that has expired is ``401 {"error": …}`` (the real capture, C14).
* §2/§3 files (multipart ``file``), envelopes (create, get, list, partial PUT of drafts, DELETE of
  drafts — ``403`` when ``forbid_delete``, as for an API key without that permission, C11 —,
  ``discard``), documents attached by file IRI (with ``metadata``), recipients (``mobile`` required
  for signers, E.164; listed under ``…/recipients``), tags (listed under ``…/tags``), notifications,
  send, cancel (only from ``sent``), extend (``PUT …/extend`` reads ``extend_keys``, by default
  ``validTo``), recipient resend (only in sent/delivered/nonDelivered/signed of a sent/completed
  envelope), downloads (``output=combined|only_log``; per document ``…/documents/{d}/download``: that
  document's own PDF, C8). Entities carry ``id``, ``createdAt``, ``updatedAt``, ``_links.self``;
  relations in bodies are IRIs; times are ISO 8601 with the Prague offset; ids are UUIDv7-like.
* §3 states: envelope draft → sent → completed | declined | expired | cancelled (and ``withdrawn``,
  C6, through the control endpoint); recipient draft → sent → delivered → signed | declined |
  authFailed, and sent → ``nonDelivered`` (C7). Signers with the lowest ``signingOrder`` are sent
  first; the next order when all of one order signed.
* §5 webhooks: one per event, each with its own ``secret``; payload ``{id, event, name, time,
  entityName, entityId, data:{status}, envelope:{id,status}}``; header ``Signature: t=…,s=…``
  (HMAC-SHA256 hex over ``"{t}.{raw body}"``); any 2xx is success; failed deliveries are retried
  (here: ``webhook_attempts`` times, ``webhook_retry_seconds`` apart, instead of 12 over 7 days). A
  deleted envelope sends ``envelopeDeleted`` (C10). ``secrets_in_list``: whether the list shows each
  hook's ``secret`` (it is always on ``GET /api/webhooks/{id}`` unless ``secrets_readable`` is off).
* §7 validation errors are 400 ``{title:"Validation Failed", detail, violations:[{propertyPath,
  title, parameters, type}]}`` with Czech texts; a request refused for the envelope's or recipient's
  *state* is a 400 whose ``violations`` have no ``propertyPath`` (C16, the SDK fixture's
  ``_actions.*.violations``); lists are ``{items, count, page, itemsPerPage, _links}`` with
  ``page``/``itemsPerPage``, ``status[in][]=`` and ``order[createdAt]=`` — ``metadata`` is not a
  filter (no source shows it as one, C1) unless ``filter_metadata``.
* ``GET /api/enums/{name}`` answers the lists in ``enums`` (404 for others), ``GET /api/docs.json``
  the document in ``docs_json`` (404 when None).

Strictness, for what the sources do not know (``strict=True`` turns on all three; each is also a
keyword of its own): ``reminder_types`` — the notification types it accepts (strict: only the
vendor-confirmed ``toSignAfterSent``, C2); ``valid_to_on_create`` — whether ``validTo`` on create is
kept (strict: ignored, the envelope expires ``expiration`` days after sending, C3);
``legacy_token`` and ``secrets_in_list`` (strict: the legacy token shape; no secrets in the list).

Signature tags (§3, C9; the SDK's ``EnvelopeTag``: ``page``, ``xPosition``, ``yPosition``, ``width``,
``height`` are ``int``): the fake reads every uploaded PDF (pikepdf: each page's displayed size, the
CropBox clipped to the MediaBox and turned by ``/Rotate``, inherited through the page tree; pdfium: its
text), and refuses with a 400 validation error a ``tags`` call whose page does not exist or whose tag
box (``width`` × ``height``, else 156 × 60 pt, from the page's top-left as displayed) is not on the
page, and a ``tags/by-placeholder`` call whose placeholder occurs in none of the envelope's documents.
``by-placeholder`` tags every occurrence in every document (the SDK answers with a collection), the
tag aligned on the placeholder's box by ``positioning`` (the nine values of the third-party notes);
each created tag is recorded in the envelope's ``tags`` with its page and box. ``send`` refuses an
envelope in which a signer has no signature tag.

Test-only control (``/_control/…``): make a recipient open/sign/decline/fail authentication/not be
delivered, expire, withdraw or delete an envelope, put it in any state, inject faults (a status with
``Retry-After``, a delay for timeouts, or ``lose_answer``: the request is carried out and the
connection then dropped without an answer) and drop webhooks (to test the reconciliation of missed
ones).

Not modelled: the asynchronous preparation phase after send (the fake is ``sent`` at once),
embedded signing, corrections, branding, scenarios, bank iD, OAuth2 webhook auth, auto-disable of
failing webhooks, the 12-attempt/7-day retry schedule, real signatures in the downloads.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pikepdf
import pypdfium2 as pdfium
from aiohttp import web

PRAGUE = ZoneInfo("Europe/Prague")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NOT_BLANK = "Tato hodnota nesmí být prázdná."
BAD_EMAIL = "Tato hodnota není platná e-mailová adresa."
BAD_PHONE = "Tato hodnota není platné telefonní číslo."
NOT_INT = "Tato hodnota by měla být typu int."
BAD_CHOICE = "Zvolená hodnota není platná."
TAG_W, TAG_H = 156, 60
"""A signature tag's default size: 55 × 21 mm."""
TAG_TYPES = frozenset({"signature", "approval", "text", "document", "attachment", "checkbox", "radio_button",
                       "date_of_signature"})
POSITIONINGS = frozenset({"top_left", "top_center", "top_right", "middle_left", "center", "middle_right",
                          "bottom_left", "bottom_center", "bottom_right"})


@dataclass(frozen=True)
class PageInfo:
    """One page as a viewer shows it: ``box`` is the visible area in user space (left, bottom, right,
    top), turned clockwise by ``rotate``; ``width`` × ``height`` is the displayed size."""

    box: tuple[float, float, float, float]
    rotate: int

    @property
    def width(self) -> float:
        x0, y0, x1, y1 = self.box
        return x1 - x0 if self.rotate in (0, 180) else y1 - y0

    @property
    def height(self) -> float:
        x0, y0, x1, y1 = self.box
        return y1 - y0 if self.rotate in (0, 180) else x1 - x0

    def display(self, ux: float, uy: float) -> tuple[float, float]:
        """A user-space point on the displayed page (from its top-left, y downwards)."""
        x0, y0, x1, y1 = self.box
        return {0: (ux - x0, y1 - uy), 90: (uy - y0, ux - x0), 180: (x1 - ux, uy - y0),
                270: (y1 - uy, x1 - ux)}[self.rotate]

    def holds(self, x: float, y: float, w: float, h: float) -> bool:
        return x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= self.width + 0.01 and y + h <= self.height + 0.01


def read_pages(data: bytes) -> list[PageInfo] | None:
    """Each page's displayed frame, or None when the file is not a PDF that can be read."""

    def inherited(page: Any, key: str) -> Any:
        node = page
        for _ in range(64):
            if key in node:
                return node[key]
            if "/Parent" not in node:
                return None
            node = node["/Parent"]
        return None

    def rect(value: Any) -> tuple[float, float, float, float] | None:
        try:
            x0, y0, x1, y1 = (float(v) for v in value)
        except (TypeError, ValueError):
            return None
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    try:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            pages = []
            for page in pdf.pages:
                media = rect(inherited(page.obj, "/MediaBox")) or (0.0, 0.0, 612.0, 792.0)
                crop = rect(inherited(page.obj, "/CropBox")) or media
                box = (max(media[0], crop[0]), max(media[1], crop[1]), min(media[2], crop[2]), min(media[3], crop[3]))
                if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                    box = media
                rotate = int(inherited(page.obj, "/Rotate") or 0) // 90 * 90 % 360
                pages.append(PageInfo(box, rotate))
            return pages
    except (pikepdf.PdfError, ValueError, TypeError):
        return None


def find_text(data: bytes, pages: list[PageInfo], needle: str) -> list[tuple[int, tuple[float, float, float, float]]]:
    """Every occurrence of ``needle`` in the text: (0-based page, displayed box left, top, right, bottom)."""
    found = []
    doc = pdfium.PdfDocument(data)
    try:
        for index in range(len(doc)):
            text = doc[index].get_textpage()
            searcher = text.search(needle, match_case=True)
            while (hit := searcher.get_next()) is not None:
                start, count = hit
                points = []
                for i in range(start, start + count):
                    left, bottom, right, top = text.get_charbox(i)
                    if right > left and top > bottom:
                        points += [pages[index].display(left, bottom), pages[index].display(right, top)]
                if points:
                    xs, ys = [p[0] for p in points], [p[1] for p in points]
                    found.append((index, (min(xs), min(ys), max(xs), max(ys))))
    finally:
        doc.close()
    return found


def aligned(box: tuple[float, float, float, float], w: int, h: int, positioning: str) -> tuple[int, int]:
    """The tag's top-left corner when it is aligned on ``box`` (left, top, right, bottom) by ``positioning``."""
    left, top, right, bottom = box
    vertical, _, horizontal = positioning.partition("_") if positioning != "center" else ("middle", "", "center")
    x = {"left": left, "center": (left + right - w) / 2, "right": right - w}[horizontal]
    y = {"top": top, "middle": (top + bottom - h) / 2, "bottom": bottom - h}[vertical]
    return round(x), round(y)


def _uuid7(now: datetime) -> str:
    ms = int(now.timestamp() * 1000)
    raw = ms.to_bytes(6, "big") + secrets.token_bytes(10)
    b = bytearray(raw)
    b[6] = (b[6] & 0x0F) | 0x70
    b[8] = (b[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))


@dataclass
class Fault:
    path: str
    status: int = 500
    times: int = 1
    retry_after: int | None = None
    delay: float = 0.0
    method: str | None = None
    lose_answer: bool = False
    """Carry the request out, then drop the connection without answering (a timeout after the fact)."""


ENUMS: dict[str, list[str]] = {
    "envelope-status": ["draft", "sent", "completed", "expired", "declined", "disapproved", "cancelled", "correction",
                        "withdrawn"],
    "envelope-recipient-status": ["draft", "sent", "delivered", "nonDelivered", "signed", "declined", "disapproved",
                                  "cancelled", "authFailed"],
    "envelope-notification-type": ["toSignAfterSent"],
    "authentication-method": ["none", "sms", "bank_id", "identify"],
    "webhook-event": ["envelopeSent", "envelopeCompleted", "envelopeExpired", "envelopeDeclined",
                      "envelopeDisapproved", "envelopeCancelled", "envelopeDeleted", "recipientSent",
                      "recipientDelivered", "recipientNonDelivered", "recipientAuthFailed", "recipientSigned",
                      "recipientDownloaded", "recipientDeclined", "recipientDisapproved", "recipientCanceled"],
}
"""The enums as the notes know them (§3–§5; ``withdrawn``: C6; notification types: only the vendor-confirmed
one, C2), under names of the fake's choosing: tests replace them."""
STATE_TYPE = "urn:uuid:d6bcd7cf-b8f0-4b5c-9422-1a108ba23635"


@dataclass
class Delivery:
    webhook_id: str
    event: str
    body: bytes
    statuses: list[int | str] = field(default_factory=list)


class FakeDigiSign:
    def __init__(
        self, *, access_key: str = "ak_test", secret_key: str = "sk_test", clock: Callable[[], datetime] | None = None,
        token_lifetime: int = 86400, webhook_attempts: int = 3, webhook_retry_seconds: float = 0.05,
        strict: bool = False, reminder_types: frozenset[str] | None = None, valid_to_on_create: bool | None = None,
        legacy_token: bool | None = None, secrets_in_list: bool | None = None, secrets_readable: bool = True,
        filter_metadata: bool = False, forbid_delete: bool = False, extend_keys: tuple[str, ...] = ("validTo",),
        enums: dict[str, list[str]] | None = None, docs_json: dict[str, Any] | None = None,
    ) -> None:
        self.access_key, self.secret_key = access_key, secret_key
        self.clock = clock or (lambda: datetime.now(UTC))
        self.token_lifetime = token_lifetime
        self.strict = strict
        self.reminder_types = reminder_types if reminder_types is not None else (
            frozenset({"toSignAfterSent"}) if strict else frozenset({"toSignAfterSent", "toSignBeforeExpires"}))
        self.valid_to_on_create = (not strict) if valid_to_on_create is None else valid_to_on_create
        self.legacy_token = strict if legacy_token is None else legacy_token
        self.secrets_in_list = (not strict) if secrets_in_list is None else secrets_in_list
        self.secrets_readable = secrets_readable
        self.filter_metadata = filter_metadata
        self.forbid_delete = forbid_delete
        self.extend_keys = extend_keys
        self.enums = dict(ENUMS) if enums is None else enums
        self.docs_json = docs_json
        self.webhook_attempts, self.webhook_retry_seconds = webhook_attempts, webhook_retry_seconds
        self.tokens: dict[str, int] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.envelopes: dict[str, dict[str, Any]] = {}
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.drop_webhooks = False
        self.deliveries: list[Delivery] = []
        self.calls: list[tuple[str, str]] = []
        self.token_requests = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.base_url = ""
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    async def settle(self) -> None:
        """Wait until every webhook delivery in flight has finished (tests only)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ helpers
    def _now(self) -> datetime:
        return self.clock()

    def _stamp(self, moment: datetime | None = None) -> str:
        return (moment or self._now()).astimezone(PRAGUE).isoformat(timespec="seconds")

    @staticmethod
    def _violation(path: str, title: str) -> dict[str, Any]:
        return {"propertyPath": path, "title": title, "parameters": {"{{ value }}": "null"},
                "type": "urn:uuid:c1051bb4-d103-4f74-8988-acbcafc7fdc3"}

    def _invalid(self, violations: list[dict[str, Any]]) -> web.Response:
        detail = "\n".join(f"{v['propertyPath']}: {v['title']}" for v in violations)
        return web.json_response({"title": "Validation Failed", "detail": detail, "violations": violations},
                                 status=400)

    @staticmethod
    def _state_error(title: str, statuses: str) -> web.Response:
        """A request refused for a state: 400, ``violations`` without ``propertyPath`` (C16)."""
        violation = {"title": title, "parameters": {"{{ statuses }}": statuses}, "type": STATE_TYPE}
        return web.json_response({"title": "Validation Failed", "detail": title, "violations": [violation]},
                                 status=400)

    @staticmethod
    def _problem(status: int, title: str, detail: str) -> web.Response:
        return web.json_response({"type": "about:blank", "title": title, "status": status, "detail": detail},
                                 status=status)

    def _envelope(self, request: web.Request) -> dict[str, Any]:
        env = self.envelopes.get(request.match_info["id"])
        if env is None:
            raise web.HTTPNotFound(text=json.dumps({"title": "Not Found", "status": 404, "detail": "Not Found"}),
                                   content_type="application/json")
        return env

    def _touch(self, entity: dict[str, Any]) -> None:
        entity["updatedAt"] = self._stamp()

    def _env_json(self, env: dict[str, Any]) -> dict[str, Any]:
        iri = f"/api/envelopes/{env['id']}"
        out = {k: v for k, v in env.items() if not k.startswith("_")}
        out["documents"] = [{**d, "_links": {"self": f"{iri}/documents/{d['id']}"}} for d in env["documents"]]
        out["recipients"] = [{**r, "_links": {"self": f"{iri}/recipients/{r['id']}"}} for r in env["recipients"]]
        out["_links"] = {"self": iri}
        out["_actions"] = {"send": {"method": "POST", "uri": f"{iri}/send"}}
        return out

    # ------------------------------------------------------------------ app
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults_mw, self._auth_mw], client_max_size=60 * 1024 * 1024)
        r = app.router
        r.add_post("/api/auth-token", self.auth_token)
        r.add_post("/api/files", self.upload)
        r.add_get("/api/files/{id}/content", self.file_content)
        r.add_get("/api/envelopes", self.list_envelopes)
        r.add_post("/api/envelopes", self.create_envelope)
        r.add_get("/api/envelopes/{id}", self.get_envelope)
        r.add_put("/api/envelopes/{id}", self.update_envelope)
        r.add_delete("/api/envelopes/{id}", self.delete_envelope)
        r.add_post("/api/envelopes/{id}/discard", self.discard)
        r.add_post("/api/envelopes/{id}/documents", self.add_document)
        r.add_get("/api/envelopes/{id}/documents/{did}/download", self.download_document)
        r.add_post("/api/envelopes/{id}/recipients", self.add_recipient)
        r.add_get("/api/envelopes/{id}/recipients", self.list_recipients)
        r.add_post("/api/envelopes/{id}/tags", self.add_tag)
        r.add_get("/api/envelopes/{id}/tags", self.list_tags)
        r.add_post("/api/envelopes/{id}/tags/by-placeholder", self.add_tags_by_placeholder)
        r.add_post("/api/envelopes/{id}/notifications", self.add_notification)
        r.add_get("/api/envelopes/{id}/notifications", self.list_notifications)
        r.add_post("/api/envelopes/{id}/send", self.send)
        r.add_post("/api/envelopes/{id}/cancel", self.cancel)
        r.add_put("/api/envelopes/{id}/extend", self.extend)
        r.add_post("/api/envelopes/{id}/recipients/{rid}/resend", self.resend)
        r.add_get("/api/envelopes/{id}/download", self.download)
        r.add_get("/api/webhooks", self.list_webhooks)
        r.add_post("/api/webhooks", self.create_webhook)
        r.add_get("/api/webhooks/{id}", self.get_webhook)
        r.add_delete("/api/webhooks/{id}", self.delete_webhook)
        r.add_get("/api/account/me", self.me)
        r.add_get("/api/enums/{name}", self.get_enum)
        r.add_get("/api/docs.json", self.get_docs)
        r.add_post("/_control/envelopes/{id}/recipients/{rid}/{action}", self.control_recipient)
        r.add_post("/_control/envelopes/{id}/expire", self.control_expire)
        r.add_post("/_control/envelopes/{id}/withdraw", self.control_withdraw)
        r.add_post("/_control/envelopes/{id}/delete", self.control_delete)
        r.add_post("/_control/envelopes/{id}/status", self.control_status)
        r.add_post("/_control/faults", self.control_fault)
        r.add_post("/_control/webhooks", self.control_webhooks)
        return app

    @web.middleware
    async def _faults_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        if not request.path.startswith("/_control"):
            for fault in self.faults:
                if fault.times > 0 and fault.path in request.path and fault.method in (None, request.method):
                    fault.times -= 1
                    if fault.lose_answer:  # done here, but the caller never hears of it
                        await handler(request)
                        assert request.transport is not None
                        request.transport.abort()
                        raise asyncio.CancelledError
                    if fault.delay:
                        await asyncio.sleep(fault.delay)
                        break
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    return web.json_response({"title": "Injected", "status": fault.status, "detail": "fault"},
                                             status=fault.status, headers=headers)
        return await handler(request)

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/") and request.path != "/api/auth-token":
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme != "Bearer" or token not in self.tokens:  # the real capture's shape (C14)
                return web.json_response({"error": "Bearer token is not a JWT."}, status=401)
            if self.tokens[token] <= int(self._now().timestamp()):
                return web.json_response({"error": "Expired JWT Token"}, status=401)
        return await handler(request)

    # ------------------------------------------------------------------ §1 auth
    async def auth_token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        body = await request.json()
        if body.get("accessKey") != self.access_key or body.get("secretKey") != self.secret_key:
            return web.json_response({"code": 401, "message": "Invalid credentials."}, status=401)
        iat = int(self._now().timestamp())
        token = "eyJ." + secrets.token_urlsafe(32)
        self.tokens[token] = iat + self.token_lifetime
        if self.legacy_token:  # the SDK fixture's shape (C13)
            return web.json_response({"token": token, "expiresAt": iat + self.token_lifetime})
        return web.json_response({"token": token, "exp": iat + self.token_lifetime, "iat": iat})

    async def me(self, request: web.Request) -> web.Response:
        return web.json_response({"id": "acc", "email": "api@example.test"})

    # ------------------------------------------------------------------ files
    async def upload(self, request: web.Request) -> web.Response:
        reader = await request.multipart()
        part = await reader.next()
        if part is None or getattr(part, "name", None) != "file":
            return self._invalid([self._violation("file", NOT_BLANK)])
        data = bytes(await part.read())  # type: ignore[union-attr]
        fid = _uuid7(self._now())
        name = part.filename or "file.pdf"  # type: ignore[union-attr]
        self.files[fid] = {"id": fid, "name": name, "originalName": name, "mimeType": "application/pdf",
                           "size": len(data), "sha1Checksum": hashlib.sha1(data).hexdigest(),
                           "_links": {"self": f"/api/files/{fid}", "content": f"/api/files/{fid}/content"},
                           "_content": data, "_pages": read_pages(data)}
        return web.json_response({k: v for k, v in self.files[fid].items() if k not in ("_content", "_pages")},
                                 status=201)

    async def file_content(self, request: web.Request) -> web.Response:
        f = self.files.get(request.match_info["id"])
        if f is None:
            return self._problem(404, "Not Found", "Not Found")
        return web.Response(body=f["_content"], content_type="application/pdf")

    # ------------------------------------------------------------------ envelopes
    async def create_envelope(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = self._now()
        eid = _uuid7(now)
        env = {
            "id": eid, "status": "draft", "name": body.get("name", ""), "emailBody": body.get("emailBody"),
            "language": body.get("language", "cs"), "metadata": body.get("metadata"),
            "expiration": body.get("expiration", 30),
            "validTo": body.get("validTo") if self.valid_to_on_create else None,
            "createdAt": self._stamp(now), "updatedAt": self._stamp(now), "sentAt": None, "completedAt": None,
            "cancelledAt": None, "expiredAt": None, "declinedAt": None, "documents": [], "recipients": [],
            "notifications": [], "tags": [], "cancelReason": None,
        }
        self.envelopes[eid] = env
        return web.json_response(self._env_json(env), status=201)

    async def get_envelope(self, request: web.Request) -> web.Response:
        return web.json_response(self._env_json(self._envelope(request)))

    async def list_envelopes(self, request: web.Request) -> web.Response:
        q = request.query
        page, per = int(q.get("page", "1")), min(int(q.get("itemsPerPage", "30")), 500)
        items = sorted(self.envelopes.values(), key=lambda e: e["id"],  # UUIDv7: in creation order
                       reverse=q.get("order[createdAt]", "ASC").upper() == "DESC")
        if "metadata[eq]" in q and self.filter_metadata:  # otherwise ignored, as an unknown filter
            items = [e for e in items if e["metadata"] == q["metadata[eq]"]]
        statuses = q.getall("status[in][]", [])
        if statuses:
            items = [e for e in items if e["status"] in statuses]
        chunk = items[(page - 1) * per: page * per]
        return web.json_response({"items": [self._env_json(e) for e in chunk], "count": len(items), "page": page,
                                  "itemsPerPage": per,
                                  "_links": {"self": f"/api/envelopes?page={page}&itemsPerPage={per}"}})

    async def update_envelope(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        if env["status"] != "draft":
            return self._problem(400, "Bad Request", "Obálku lze upravit jen ve stavu koncept.")
        env.update({k: v for k, v in (await request.json()).items() if k in ("name", "emailBody", "validTo",
                                                                              "expiration", "metadata")})
        self._touch(env)
        return web.json_response(self._env_json(env))

    async def delete_envelope(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        if self.forbid_delete:
            return self._problem(403, "Forbidden", "API klíč nemá oprávnění k této akci.")
        if env["status"] != "draft":
            return self._state_error('Envelope status must be one of "draft"', '"draft"')
        del self.envelopes[env["id"]]
        self._emit("envelopeDeleted", env)
        return web.Response(status=204)

    async def discard(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        env["discardedAt"] = self._stamp()
        self._touch(env)
        return web.json_response(self._env_json(env))

    async def add_document(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        body = await request.json()
        m = re.fullmatch(r"/api/files/([0-9a-f-]+)", str(body.get("file", "")))
        if m is None or m.group(1) not in self.files:
            return self._invalid([self._violation("file", "Neplatné IRI.")])
        if len(env["documents"]) >= 20:
            return self._invalid([self._violation("documents", "Obálka může mít nejvýše 20 dokumentů.")])
        doc = {"id": _uuid7(self._now()), "name": body.get("name") or self.files[m.group(1)]["name"],
               "file": f"/api/files/{m.group(1)}", "metadata": body.get("metadata"), "createdAt": self._stamp()}
        env["documents"].append(doc)
        return web.json_response(doc, status=201)

    async def add_recipient(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        body = await request.json()
        violations = []
        role = body.get("role", "signer")
        if not body.get("email"):
            violations.append(self._violation("email", NOT_BLANK))
        elif not EMAIL.match(body["email"]):
            violations.append(self._violation("email", BAD_EMAIL))
        if not body.get("name"):
            violations.append(self._violation("name", NOT_BLANK))
        if role == "signer" and not body.get("mobile"):
            violations.append(self._violation("mobile", NOT_BLANK))
        elif body.get("mobile") and not E164.match(body["mobile"]):
            violations.append(self._violation("mobile", BAD_PHONE))
        if violations:
            return self._invalid(violations)
        rec = {"id": _uuid7(self._now()), "role": role, "name": body["name"], "email": body["email"],
               "mobile": body.get("mobile"), "signingOrder": int(body.get("signingOrder", 1)), "status": "draft",
               "authenticationOnOpen": body.get("authenticationOnOpen", "sms"),
               "language": body.get("language", env["language"]), "metadata": body.get("metadata"),
               "sentAt": None, "deliveredAt": None, "nonDeliveredAt": None, "signedAt": None, "declinedAt": None,
               "authFailedAt": None, "declineReason": None, "nonDeliveryReason": None, "createdAt": self._stamp()}
        env["recipients"].append(rec)
        return web.json_response(rec, status=201)

    async def list_recipients(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        return web.json_response({"items": env["recipients"], "count": len(env["recipients"]), "page": 1,
                                  "itemsPerPage": 30})

    async def list_tags(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        return web.json_response({"items": env["tags"], "count": len(env["tags"]), "page": 1, "itemsPerPage": 30})

    # ------------------------------------------------------------------ tags
    def document_pages(self, env: dict[str, Any], document: dict[str, Any]) -> list[PageInfo] | None:
        """The displayed pages of one of the envelope's documents (tests check tags against them)."""
        return self.files[document["file"].rsplit("/", 1)[1]]["_pages"]

    def _size(self, body: dict[str, Any], violations: list[dict[str, Any]]) -> tuple[int, int]:
        size = []
        for key, default in (("width", TAG_W), ("height", TAG_H)):
            value = body.get(key)
            if value is None:
                size.append(default)
            elif not _is_int(value) or value <= 0:
                violations.append(self._violation(key, NOT_INT if not _is_int(value) else "Hodnota musí být kladná."))
                size.append(default)
            else:
                size.append(int(value))
        return size[0], size[1]

    def _tag_common(self, env: dict[str, Any], body: dict[str, Any], violations: list[dict[str, Any]]) -> None:
        iri = f"/api/envelopes/{env['id']}"
        if body.get("recipient") not in {f"{iri}/recipients/{r['id']}" for r in env["recipients"]}:
            violations.append(self._violation("recipient", "Neplatné IRI."))
        if body.get("type") not in TAG_TYPES:
            violations.append(self._violation("type", BAD_CHOICE))

    def _record(self, env: dict[str, Any], tag: dict[str, Any]) -> dict[str, Any]:
        tag = {"id": _uuid7(self._now()), **tag, "createdAt": self._stamp(), "updatedAt": self._stamp()}
        tag["_links"] = {"self": f"/api/envelopes/{env['id']}/tags/{tag['id']}"}
        env["tags"].append(tag)
        return tag

    async def add_tag(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        body = await request.json()
        iri = f"/api/envelopes/{env['id']}"
        doc = next((d for d in env["documents"] if f"{iri}/documents/{d['id']}" == body.get("document")), None)
        violations: list[dict[str, Any]] = []
        if doc is None:
            violations.append(self._violation("document", "Neplatné IRI."))
        self._tag_common(env, body, violations)
        for key in ("page", "xPosition", "yPosition"):
            if body.get(key) is None:
                violations.append(self._violation(key, NOT_BLANK))
            elif not _is_int(body[key]):
                violations.append(self._violation(key, NOT_INT))
        w, h = self._size(body, violations)
        if violations:
            return self._invalid(violations)
        assert doc is not None
        pages = self.document_pages(env, doc)
        if pages is None:
            return self._invalid([self._violation("document", "Do dokumentu nelze umístit štítek: není to PDF.")])
        page, x, y = int(body["page"]), int(body["xPosition"]), int(body["yPosition"])
        if not 1 <= page <= len(pages):
            return self._invalid([self._violation(
                "page", f"Dokument má {len(pages)} stran; strana {page} neexistuje.")])
        frame = pages[page - 1]
        if not frame.holds(x, y, w, h):
            where = "xPosition" if x < 0 or x + w > frame.width else "yPosition"
            return self._invalid([self._violation(where, (
                f"Štítek {w} × {h} b na x={x}, y={y} přesahuje stranu {page} "
                f"({frame.width:g} × {frame.height:g} b)."))])
        tag = self._record(env, {**body, "page": page, "xPosition": x, "yPosition": y, "width": w, "height": h,
                                 "placeholder": None, "positioning": None})
        return web.json_response(tag, status=201)

    async def add_tags_by_placeholder(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        body = await request.json()
        violations: list[dict[str, Any]] = []
        self._tag_common(env, body, violations)
        placeholder = body.get("placeholder")
        if not isinstance(placeholder, str) or not placeholder.strip():
            violations.append(self._violation("placeholder", NOT_BLANK))
        if body.get("positioning") not in POSITIONINGS:
            violations.append(self._violation("positioning", BAD_CHOICE))
        w, h = self._size(body, violations)
        if violations:
            return self._invalid(violations)
        iri = f"/api/envelopes/{env['id']}"
        tags = []
        for doc in env["documents"]:
            pages = self.document_pages(env, doc)
            if pages is None:
                continue
            content = self.files[doc["file"].rsplit("/", 1)[1]]["_content"]
            for index, box in find_text(content, pages, placeholder):
                x, y = aligned(box, w, h, body["positioning"])
                if not pages[index].holds(x, y, w, h):
                    return self._invalid([self._violation("positioning", (
                        f"Štítek u zástupného textu {placeholder} přesahuje stranu {index + 1}."))])
                tags.append({**body, "document": f"{iri}/documents/{doc['id']}", "page": index + 1,
                             "xPosition": x, "yPosition": y, "width": w, "height": h})
        if not tags:
            return self._invalid([self._violation("placeholder", (
                f"Zástupný text {placeholder} není v žádném dokumentu obálky."))])
        created = [self._record(env, t) for t in tags]
        return web.json_response({"items": created, "count": len(created), "page": 1, "itemsPerPage": len(created)},
                                 status=201)

    async def add_notification(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        body = await request.json()
        if body.get("type") not in self.reminder_types:
            return self._invalid([self._violation("type", BAD_CHOICE)])
        if not _is_int(body.get("days")):
            return self._invalid([self._violation("days", NOT_INT)])
        n = {"id": _uuid7(self._now()), "type": body["type"], "days": body["days"], "status": "waiting",
             "sentAt": None, "cancelledAt": None, "createdAt": self._stamp(), "updatedAt": self._stamp()}
        env["notifications"].append(n)
        return web.json_response(n, status=201)

    async def list_notifications(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        return web.json_response({"items": env["notifications"], "count": len(env["notifications"]), "page": 1,
                                  "itemsPerPage": 30})

    async def send(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        if env["status"] != "draft":
            return self._state_error('Envelope status must be one of "draft"', '"draft"')
        violations = []
        if not env["documents"]:
            violations.append(self._violation("documents", "Obálka musí obsahovat alespoň jeden dokument."))
        if not any(r["role"] == "signer" for r in env["recipients"]):
            violations.append(self._violation("recipients", "Obálka musí mít alespoň jednoho podepisujícího."))
        tagged = {t["recipient"] for t in env["tags"] if t.get("type") == "signature"}
        iri = f"/api/envelopes/{env['id']}"
        if any(r["role"] == "signer" and f"{iri}/recipients/{r['id']}" not in tagged for r in env["recipients"]):
            violations.append(self._violation("recipients", "Každý podepisující musí mít podpisový štítek."))
        now = self._now()
        valid_to = datetime.fromisoformat(env["validTo"]) if env["validTo"] else now + timedelta(
            days=int(env["expiration"]))
        if valid_to <= now:
            violations.append(self._violation("validTo", "Datum platnosti musí být v budoucnosti."))
        if violations:
            return self._invalid(violations)
        env.update(status="sent", sentAt=self._stamp(now), validTo=self._stamp(valid_to))
        self._touch(env)
        self._emit("envelopeSent", env)
        self._send_next_order(env)
        return web.json_response(self._env_json(env))

    def _send_next_order(self, env: dict[str, Any]) -> None:
        waiting = [r for r in env["recipients"] if r["role"] == "signer" and r["status"] == "draft"]
        if not waiting:
            return
        order = min(r["signingOrder"] for r in waiting)
        for r in waiting:
            if r["signingOrder"] == order:
                r.update(status="sent", sentAt=self._stamp())
                self._emit("recipientSent", env, r)

    async def cancel(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        if env["status"] not in ("sent", "correction"):
            return self._state_error('Envelope status must be one of "sent", "correction"', '"sent", "correction"')
        body = await request.json() if request.can_read_body else {}
        env.update(status="cancelled", cancelledAt=self._stamp(), cancelReason=body.get("reason"))
        for r in env["recipients"]:
            if r["status"] in ("draft", "sent", "delivered"):
                r["status"] = "cancelled"
        self._touch(env)
        self._emit("envelopeCancelled", env)
        return web.json_response(self._env_json(env))

    async def extend(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        body = await request.json()
        if env["status"] != "sent":
            return self._state_error('Envelope status must be one of "sent"', '"sent"')
        key = next((k for k in self.extend_keys if k in body), None)
        if key is None:
            return web.json_response(self._env_json(env))  # keys it does not know: ignored, as on the real API
        try:
            valid_to = datetime.fromisoformat(body[key])
        except (TypeError, ValueError):
            return self._invalid([self._violation(key, "Tato hodnota není platné datum a čas.")])
        if valid_to <= self._now():
            return self._invalid([self._violation("validTo", "Datum platnosti musí být v budoucnosti.")])
        env["validTo"] = self._stamp(valid_to)
        self._touch(env)
        return web.json_response(self._env_json(env))

    async def resend(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        rec = next((r for r in env["recipients"] if r["id"] == request.match_info["rid"]), None)
        if rec is None:
            return self._problem(404, "Not Found", "Not Found")
        if rec["status"] not in ("sent", "delivered", "nonDelivered", "signed"):
            return self._state_error('EnvelopeRecipient status must be one of "sent", "delivered", "nonDelivered", '
                                     '"signed"', '"sent", "delivered", "nonDelivered", "signed"')
        if env["status"] not in ("sent", "completed"):
            return self._state_error('Envelope status must be one of "sent", "completed"', '"sent", "completed"')
        rec.setdefault("resent", 0)
        rec["resent"] += 1
        return web.json_response(rec)

    async def download(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        output = request.query.get("output", "combined")
        if output == "only_log":
            data = _log_pdf(env)
        elif output == "combined":
            data = _combined_pdf([self.files[d["file"].rsplit("/", 1)[1]]["_content"] for d in env["documents"]],
                                 env)
        else:
            return self._invalid([self._violation("output", "Zvolená hodnota není platná.")])
        return web.Response(body=data, content_type="application/pdf",
                            headers={"Content-Disposition": f'attachment; filename="{env["id"]}.pdf"'})

    async def download_document(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        doc = next((d for d in env["documents"] if d["id"] == request.match_info["did"]), None)
        if doc is None:
            return self._problem(404, "Not Found", "Not Found")
        return web.Response(body=self.document_pdf(env, doc), content_type="application/pdf",
                            headers={"Content-Disposition": f'attachment; filename="{doc["name"]}"'})

    def document_pdf(self, env: dict[str, Any], doc: dict[str, Any]) -> bytes:
        """One document as DigiSign hands it out: its own file, marked with the envelope's state."""
        return _combined_pdf([self.files[doc["file"].rsplit("/", 1)[1]]["_content"]], env, doc["id"])

    # ------------------------------------------------------------------ §5 webhooks
    async def create_webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not body.get("url") or not body.get("event"):
            return self._invalid([self._violation("url" if not body.get("url") else "event", NOT_BLANK)])
        wid = _uuid7(self._now())
        hook = {"id": wid, "event": body["event"], "url": body["url"], "status": body.get("status", "enabled"),
                "secret": secrets.token_hex(32), "createdAt": self._stamp(), "updatedAt": self._stamp(),
                "_links": {"self": f"/api/webhooks/{wid}"}}
        self.webhooks[wid] = hook
        return web.json_response(hook, status=201)

    async def list_webhooks(self, request: web.Request) -> web.Response:
        items = [h if self.secrets_in_list and self.secrets_readable else {k: v for k, v in h.items() if k != "secret"}
                 for h in self.webhooks.values()]
        return web.json_response({"items": items, "count": len(items), "page": 1, "itemsPerPage": 30})

    async def get_webhook(self, request: web.Request) -> web.Response:
        hook = self.webhooks.get(request.match_info["id"])
        if hook is None:
            return self._problem(404, "Not Found", "Not Found")
        return web.json_response(hook if self.secrets_readable else {k: v for k, v in hook.items() if k != "secret"})

    async def get_enum(self, request: web.Request) -> web.Response:
        values = self.enums.get(request.match_info["name"])
        if values is None:
            return self._problem(404, "Not Found", "Not Found")
        return web.json_response(values)

    async def get_docs(self, request: web.Request) -> web.Response:
        if self.docs_json is None:
            return self._problem(404, "Not Found", "Not Found")
        return web.json_response(self.docs_json)

    async def delete_webhook(self, request: web.Request) -> web.Response:
        self.webhooks.pop(request.match_info["id"], None)
        return web.Response(status=204)

    def _emit(self, event: str, env: dict[str, Any], rec: dict[str, Any] | None = None) -> None:
        now = self._now()
        entity = rec if rec is not None else env
        payload = {
            "id": _uuid7(now), "event": event,
            "name": re.sub(r"(?<!^)(?=[A-Z])", ".", event).lower(), "time": self._stamp(now),
            "entityName": "recipient" if rec is not None else "envelope", "entityId": entity["id"],
            "data": {"status": entity["status"]}, "envelope": {"id": env["id"], "status": env["status"]},
        }
        body = json.dumps(payload).encode()
        for hook in self.webhooks.values():
            if hook["event"] == event and hook["status"] == "enabled":
                delivery = Delivery(hook["id"], event, body)
                self.deliveries.append(delivery)
                if self.drop_webhooks:
                    delivery.statuses.append("dropped")
                    continue
                task = asyncio.get_running_loop().create_task(self._deliver(hook, delivery))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def sign_body(self, secret: str, body: bytes, t: int | None = None) -> str:
        t = int(self._now().timestamp()) if t is None else t
        s = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return f"t={t},s={s}"

    async def _deliver(self, hook: dict[str, Any], delivery: Delivery) -> None:
        assert self._session is not None
        for attempt in range(self.webhook_attempts):
            if attempt:
                await asyncio.sleep(self.webhook_retry_seconds)
            headers = {"Content-Type": "application/json", "Signature": self.sign_body(hook["secret"], delivery.body)}
            try:
                async with self._session.post(hook["url"], data=delivery.body, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    delivery.statuses.append(resp.status)
                    if 200 <= resp.status < 300:
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                delivery.statuses.append(type(exc).__name__)

    # ------------------------------------------------------------------ test control
    async def control_recipient(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        rec = next((r for r in env["recipients"] if r["id"] == request.match_info["rid"]), None)
        action = request.match_info["action"]
        if rec is None or env["status"] != "sent" or rec["status"] not in ("sent", "delivered"):
            return self._problem(409, "Conflict", f"cannot {action} now")
        body = await request.json() if request.can_read_body else {}
        if action == "open":
            rec.update(status="delivered", deliveredAt=self._stamp())
            self._emit("recipientDelivered", env, rec)
        elif action == "sign":
            rec.update(status="signed", signedAt=self._stamp())
            self._emit("recipientSigned", env, rec)
            signers = [r for r in env["recipients"] if r["role"] == "signer"]
            if all(r["status"] == "signed" for r in signers):
                env.update(status="completed", completedAt=self._stamp())
                self._emit("envelopeCompleted", env)
            elif not any(r["status"] in ("sent", "delivered") for r in signers):
                self._send_next_order(env)
        elif action == "decline":
            rec.update(status="declined", declinedAt=self._stamp(), declineReason=body.get("reason"))
            self._emit("recipientDeclined", env, rec)
            env.update(status="declined", declinedAt=self._stamp())
            self._emit("envelopeDeclined", env)
        elif action == "auth_fail":
            rec.update(status="authFailed", authFailedAt=self._stamp())
            self._emit("recipientAuthFailed", env, rec)
        elif action == "non_deliver":
            rec.update(status="nonDelivered", nonDeliveredAt=self._stamp(),
                       nonDeliveryReason=body.get("reason") or "Adresát neexistuje.")
            self._emit("recipientNonDelivered", env, rec)
        else:
            return self._problem(400, "Bad Request", "unknown action")
        self._touch(env)
        return web.json_response(self._env_json(env))

    async def control_expire(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        if env["status"] == "sent":
            env.update(status="expired", expiredAt=self._stamp())
            self._emit("envelopeExpired", env)
        return web.json_response(self._env_json(env))

    async def control_withdraw(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        body = await request.json() if request.can_read_body else {}
        env.update(status="withdrawn", withdrawnAt=self._stamp(),
                   withdrawal={"reason": body.get("reason"), "createdAt": self._stamp()})
        self._touch(env)
        self._emit("envelopeCancelled", env)
        return web.json_response(self._env_json(env))

    async def control_delete(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        del self.envelopes[env["id"]]
        self._emit("envelopeDeleted", env)
        return web.Response(status=204)

    async def control_status(self, request: web.Request) -> web.Response:
        env = self._envelope(request)
        env["status"] = (await request.json())["status"]
        self._touch(env)
        return web.json_response(self._env_json(env))

    async def control_fault(self, request: web.Request) -> web.Response:
        self.faults.append(Fault(**await request.json()))
        return web.json_response({"faults": len(self.faults)}, status=201)

    async def control_webhooks(self, request: web.Request) -> web.Response:
        self.drop_webhooks = bool((await request.json()).get("drop"))
        return web.json_response({"drop": self.drop_webhooks})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _combined_pdf(documents: list[bytes], env: dict[str, Any], document_id: str | None = None) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for data in documents:
        writer.append(PdfReader(io.BytesIO(data)))
    subject = f"envelope {env['id']} {env['status']}" + (f" document {document_id}" if document_id else "")
    writer.add_metadata({"/Producer": "Fake DigiSign", "/Subject": subject})
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _log_pdf(env: dict[str, Any]) -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.drawString(72, 770, f"Protokol obalky {env['id']} ({env['status']})")
    y = 740
    for r in env["recipients"]:
        c.drawString(72, y, f"{r['name']}: {r['status']} {r.get('signedAt') or ''}")
        y -= 18
    c.showPage()
    c.save()
    return buf.getvalue()


__all__ = ["ENUMS", "FakeDigiSign", "Fault", "PageInfo", "find_text", "read_pages"]
