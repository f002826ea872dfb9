"""The Container: ports and services the edges (HTTP, jobs, CLI) use. No adapter imports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .clock import Clock
from .config import Settings
from .jobs.worker import Worker
from .metrics import Metrics
from .ports import DocumentStore, EmailSender, HealthCheck, PdfInspector, SignatureProvider, SmsSender
from .secretbox import SecretBox
from .services.archive import ArchiveService
from .services.ceremony import CeremonyService
from .services.envelopes import EnvelopeService
from .services.idempotency import IdempotencyService
from .services.notifications import NotificationService
from .services.plans import PlanService
from .services.remote import RemoteCeremonyService
from .services.tenants import TenantService

__all__ = ["Container"]


@dataclass
class Container:
    settings: Settings
    clock: Clock
    providers: dict[str, SignatureProvider]
    email: EmailSender
    sms: SmsSender
    store: DocumentStore
    inspector: PdfInspector
    tenants: TenantService
    plans: PlanService
    idempotency: IdempotencyService
    remote: RemoteCeremonyService
    archive: ArchiveService
    envelopes: EnvelopeService
    ceremony: CeremonyService
    notifications: NotificationService
    worker: Worker
    box: SecretBox
    extra_routes: list[web.RouteTableDef] = field(default_factory=list)
    """Routes bootstrap adds (dev outbox, built-in TSA)."""
    startup: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    shutdown: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    health_checks: list[HealthCheck] = field(default_factory=list)
    """What ``/readyz`` asks besides the database and the upload inspectors (pools, outages, self-test)."""
    metrics: Metrics = field(default_factory=Metrics)
    """This process's metric families, shared with the services bootstrap built (``GET /metrics``)."""
