"""Newest-first cursor pages of a tenant's envelopes (ids are UUIDv7: the id is the cursor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.envelope import Envelope

__all__ = ["Page", "envelope_page"]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Envelope]
    next_cursor: str | None


async def envelope_page(qs: Any, tenant_id: str, *, limit: int, cursor: str | None) -> Page:
    """``qs`` (envelope rows already filtered) → one page of envelopes and the cursor of the next."""
    if cursor:
        qs = qs.filter(id__lt=cursor)
    ids = [str(i) for i in await qs.order_by("-id").limit(limit + 1).values_list("id", flat=True)]
    more = len(ids) > limit
    async with UnitOfWork() as uow:
        items = await uow.envelopes.get_many(ids[:limit], tenant_id=tenant_id)
    return Page(items, ids[limit - 1] if more else None)
