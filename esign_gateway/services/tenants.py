"""Tenants and API keys. Keys are ``esk_`` + 32 random bytes, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from email_validator import EmailNotValidError, validate_email

from esign_gateway.clock import Clock
from esign_gateway.db.models import ApiKey, Tenant
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.ids import uuid7
from esign_gateway.domain.policy import MAX_EXPIRY_DAYS
from esign_gateway.domain.quota import Catalogue
from esign_gateway.errors import NotFoundError, UnauthorizedError, ValidationFailedError

__all__ = ["ROLES", "KeyInfo", "Principal", "TenantInfo", "TenantService"]

ROLES = ("integration", "support", "operator")
KEY_PREFIX = "esk_"


@dataclass(frozen=True, slots=True)
class TenantInfo:
    id: str
    name: str
    mode: str
    provider: str | None
    created_at: datetime
    default_expires_in_days: int | None = None
    contact_email: str | None = None

    @classmethod
    def from_row(cls, row: Tenant) -> TenantInfo:
        return cls(row.id, row.name, row.mode, row.provider, row.created_at, row.default_expires_in_days,
                   row.contact_email)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's role and, for integration keys, its tenant."""

    key_id: str
    role: str
    tenant: TenantInfo | None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    id: str
    prefix: str
    secret: str
    """The whole key. Shown once; only its SHA-256 is stored."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as the operator may see it: never the secret, only the 12 characters stored in clear."""

    id: str
    prefix: str
    role: str
    tenant_id: str | None
    tenant_name: str | None
    created_at: datetime
    revoked_at: datetime | None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TenantService:
    def __init__(self, clock: Clock, catalogue: Catalogue) -> None:
        self.clock = clock
        self.catalogue = catalogue

    async def create_tenant(
        self, name: str, *, paid: bool, plan_code: str = "free", documents: int | None = None,
        fee: Decimal | None = None,
    ) -> tuple[TenantInfo, IssuedKey]:
        """A new tenant holds ``plan_code`` (default ``free``) from now on."""
        name = name.strip()
        if not name:
            raise ValidationFailedError(errors=[{"field": "name", "message": "must not be empty"}])
        if self.catalogue.get(plan_code) is None:
            raise ValidationFailedError(errors=[{"field": "plan", "message": "not in the plans file"}])
        try:
            terms = self.catalogue.terms(plan_code, documents=documents, fee=fee)
        except ValueError as exc:
            raise ValidationFailedError(errors=[{"field": "plan", "message": str(exc)}]) from None
        now = self.clock.now()
        async with UnitOfWork() as uow:
            row = await Tenant.create(
                using_db=uow.conn, id=str(uuid7()), name=name, mode="paid" if paid else "trial", created_at=now
            )
            await uow.usage.add_terms(row.id, replace(terms, effective_at=now), now=now, actor="operator")
        key = await self.create_key("integration", tenant_id=row.id)
        return TenantInfo.from_row(row), key

    async def update_tenant(
        self, tenant_id: str, *, paid: bool | None = None, name: str | None = None, expiry_days: int | None = None,
        provider: str | None = None, contact_email: str | None = None,
    ) -> TenantInfo:
        """``provider``: the tenant's own signature provider; ``"default"`` returns it to the gateway's."""
        row = await Tenant.get_or_none(id=tenant_id)
        if row is None:
            raise NotFoundError(f"No tenant {tenant_id}.")
        if expiry_days is not None:
            if not 1 <= expiry_days <= MAX_EXPIRY_DAYS:
                message = f"1 to {MAX_EXPIRY_DAYS} days"
                raise ValidationFailedError(errors=[{"field": "expiry_days", "message": message}])
            row.default_expires_in_days = expiry_days
        if paid is not None:
            row.mode = "paid" if paid else "trial"
        if provider:
            row.provider = None if provider == "default" else provider
        if contact_email is not None:
            try:
                row.contact_email = validate_email(contact_email, check_deliverability=False).normalized
            except EmailNotValidError as exc:
                raise ValidationFailedError(errors=[{"field": "contact_email", "message": str(exc)}]) from None
        if name:
            row.name = name
        await row.save()
        return TenantInfo.from_row(row)

    async def list_tenants(self) -> list[TenantInfo]:
        return [TenantInfo.from_row(r) for r in await Tenant.all().order_by("created_at")]

    async def create_key(self, role: str, *, tenant_id: str | None = None) -> IssuedKey:
        if role not in ROLES:
            raise ValidationFailedError(errors=[{"field": "role", "message": f"one of {', '.join(ROLES)}"}])
        if role == "integration":
            if tenant_id is None or not await Tenant.exists(id=tenant_id):
                raise ValidationFailedError(errors=[{"field": "tenant", "message": "an existing tenant is required"}])
        elif tenant_id is not None:
            raise ValidationFailedError(errors=[{"field": "tenant", "message": f"{role} keys span all tenants"}])
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        prefix = secret[:12]
        key_id = str(uuid7())
        await ApiKey.create(
            id=key_id, tenant_id=tenant_id, role=role, prefix=prefix, key_hash=hash_key(secret),
            created_at=self.clock.now(),
        )
        return IssuedKey(key_id, prefix, secret)

    async def list_keys(self, tenant_id: str | None = None) -> list[KeyInfo]:
        """Every key (live and revoked), oldest first; only ``tenant_id``'s when given (``NotFoundError``
        for a tenant that does not exist)."""
        if tenant_id is not None and not await Tenant.exists(id=tenant_id):
            raise NotFoundError(f"No tenant {tenant_id}.")
        rows = ApiKey.all() if tenant_id is None else ApiKey.filter(tenant_id=tenant_id)
        names = dict(await Tenant.all().values_list("id", "name"))
        return [
            KeyInfo(k.id, k.prefix, k.role, k.tenant_id, names.get(k.tenant_id) if k.tenant_id else None,  # type: ignore[attr-defined]
                    k.created_at, k.revoked_at)
            for k in await rows.order_by("created_at", "id")
        ]

    async def revoke_key(self, ref: str) -> int:
        """Revoke the live key with id ``ref`` (what ``key create`` prints), or every live key whose
        secret starts with ``ref`` (at least 8 characters; the first 12 are stored). ``NotFoundError``
        when none matched: a revocation that did nothing must not look like one that did."""
        if len(ref) < 8:
            raise ValidationFailedError(errors=[{"field": "key", "message": "the key id, or 8 characters or more"}])
        live = ApiKey.filter(revoked_at=None)
        matched = live.filter(id=ref) if len(ref) == 36 and ref.count("-") == 4 else (
            live.filter(prefix=ref[:12]) if len(ref) >= 12 else live.filter(prefix__startswith=ref))
        count = await matched.update(revoked_at=self.clock.now())
        if not count:
            raise NotFoundError(f"no live key has the id or prefix {ref[:12]!r}")
        return count

    async def authenticate(self, secret: str) -> Principal:
        """Look the key up by its SHA-256 (an index lookup: no timing oracle on the secret)."""
        if not secret.startswith(KEY_PREFIX):
            raise UnauthorizedError()
        key = await ApiKey.filter(key_hash=hash_key(secret), revoked_at=None).select_related("tenant").first()
        if key is None:
            raise UnauthorizedError()
        tenant = TenantInfo.from_row(key.tenant) if key.tenant is not None else None
        return Principal(key.id, key.role, tenant)
