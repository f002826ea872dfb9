"""``esign-gateway digisign check``: the adapter's literals against what a DigiSign API says it knows.

DigiSign lists its enums at ``GET /api/enums/{name}`` and publishes its API at ``GET /api/docs.json``
(notes §2, §9). Neither the enum names nor the document's exact shape are in any source the adapter
was written from, so both are read tolerantly: each group of literals is looked for under a few
likely enum names, and else in the document's schemas (OpenAPI ``components.schemas`` or Swagger
``definitions``: the property's ``enum`` in the schemas named after the resource). What cannot be
found is said, not guessed.

A difference is a *problem* when the adapter sends a value DigiSign does not list, or when DigiSign
lists a state the adapter does not know (such an envelope or recipient would be reported ``unknown``).
Values DigiSign offers and the adapter does not use (other events, other verification methods) are
shown for information.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .client import DigiSignClient, DigiSignError, DigiSignInvalid
from .provider import AUTHENTICATION_METHODS, ENVELOPE_STATES, EVENTS, NOTIFICATION_TYPES, RECIPIENT_STATES

__all__ = ["GROUPS", "Comparison", "Group", "compare", "report"]


@dataclass(frozen=True)
class Group:
    title: str
    ours: tuple[str, ...]
    enum_names: tuple[str, ...]
    schema: str
    """The resource whose schema holds the property, e.g. ``EnvelopeRecipient``."""
    prop: str
    known_both_ways: bool
    """True for states: a value only DigiSign has is a problem too (the adapter would not know it)."""


GROUPS = (
    Group("envelope states", tuple(ENVELOPE_STATES),
          ("envelope-status", "envelope_status", "envelopeStatus", "EnvelopeStatus"), "Envelope", "status", True),
    Group("recipient states", tuple(RECIPIENT_STATES),
          ("envelope-recipient-status", "recipient-status", "envelope_recipient_status", "envelopeRecipientStatus",
           "EnvelopeRecipientStatus"), "EnvelopeRecipient", "status", True),
    Group("notification types", NOTIFICATION_TYPES,
          ("envelope-notification-type", "notification-type", "envelope_notification_type",
           "envelopeNotificationType", "EnvelopeNotificationType"), "EnvelopeNotification", "type", False),
    Group("authentication methods", AUTHENTICATION_METHODS,
          ("authentication-method", "authentication_method", "authenticationMethod", "AuthenticationMethod",
           "envelope-recipient-authentication"), "EnvelopeRecipient", "authenticationOnOpen", False),
    Group("webhook events", EVENTS,
          ("webhook-event", "webhook_event", "webhookEvent", "WebhookEvent"), "Webhook", "event", False),
)


@dataclass
class Comparison:
    group: Group
    source: str | None
    """Where DigiSign's values came from (``GET /api/enums/…`` or ``docs.json …``); None: not found."""
    theirs: list[str] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)

    @property
    def only_ours(self) -> list[str]:
        return [v for v in self.group.ours if v not in self.theirs] if self.source else []

    @property
    def only_theirs(self) -> list[str]:
        return [v for v in self.theirs if v not in self.group.ours] if self.source else []

    @property
    def problem(self) -> bool:
        return bool(self.only_ours or (self.group.known_both_ways and self.only_theirs))


def _values(body: Any) -> list[str] | None:
    """The values of an enum answer: a list of strings, of ``{value|name|id: …}``, or such a list
    inside ``items``/``values``/``cases``/``hydra:member``/``enum``, or a name → value mapping."""
    if isinstance(body, list):
        out = []
        for item in body:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict):
                value = next((item[k] for k in ("value", "name", "id") if isinstance(item.get(k), str)), None)
                if value is not None:
                    out.append(value)
        return out if out else None
    if isinstance(body, dict):
        for key in ("items", "values", "cases", "hydra:member", "enum"):
            if key in body:
                return _values(body[key])
        if body and all(isinstance(v, str) for v in body.values()):
            return list(body.values())
    return None


def _schema_enum(doc: Any, schema: str, prop: str) -> tuple[str, list[str]] | None:
    """The ``enum`` of ``prop`` in every schema named ``schema`` (or ``schema`` plus an API Platform
    suffix such as ``.jsonld-read`` or ``-read``) of an OpenAPI/Swagger document."""
    if not isinstance(doc, dict):
        return None
    schemas = (doc.get("components") or {}).get("schemas") or doc.get("definitions") or {}
    found: list[str] = []
    names = []
    for name, body in schemas.items() if isinstance(schemas, dict) else ():
        if not (name == schema or name.startswith((f"{schema}.", f"{schema}-"))) or not isinstance(body, dict):
            continue
        spec = (body.get("properties") or {}).get(prop)
        if not isinstance(spec, dict):
            continue
        options = [spec, *[s for k in ("anyOf", "oneOf", "allOf") for s in spec.get(k) or [] if isinstance(s, dict)]]
        for option in options:
            for value in option.get("enum") or []:
                if isinstance(value, str) and value not in found:
                    found.append(value)
        names.append(name)
    return (f"docs.json {'/'.join(names)}.{prop}", found) if found else None


async def _get(client: DigiSignClient, path: str) -> Any:
    try:
        return await client.call("GET", path)
    except (DigiSignError, DigiSignInvalid):
        return None


async def compare(client: DigiSignClient) -> tuple[list[Comparison], bool]:
    """Each group compared; and whether ``/api/docs.json`` could be read."""
    doc = await _get(client, "/api/docs.json")
    out = []
    for group in GROUPS:
        result = Comparison(group, None)
        for name in group.enum_names:
            result.tried.append(f"/api/enums/{name}")
            values = _values(await _get(client, f"/api/enums/{name}"))
            if values is not None:
                result.source, result.theirs = f"GET /api/enums/{name}", values
                break
        if result.source is None and (found := _schema_enum(doc, group.schema, group.prop)) is not None:
            result.source, result.theirs = found
        if result.source is None:
            result.tried.append(f"docs.json {group.schema}.{group.prop}")
        out.append(result)
    return out, doc is not None


def report(results: list[Comparison], docs_read: bool) -> list[str]:
    lines = [] if docs_read else ["/api/docs.json: not available (only the enums were read)"]
    for r in results:
        if r.source is None:
            lines.append(f"{r.group.title}: not found at DigiSign (tried {', '.join(r.tried)})")
            continue
        if not r.only_ours and not r.only_theirs:
            lines.append(f"{r.group.title}: same ({r.source})")
            continue
        parts = []
        if r.only_ours:
            parts.append(f"the adapter's {', '.join(r.only_ours)} not listed by DigiSign")
        if r.only_theirs:
            parts.append(f"DigiSign's {', '.join(r.only_theirs)} "
                         + ("unknown to the adapter (reported as unknown)" if r.group.known_both_ways
                            else "not used by the adapter"))
        lines.append(f"{r.group.title}: {'DIFFERS' if r.problem else 'differs (for information)'} "
                     f"({r.source}): {'; '.join(parts)}")
    return lines
