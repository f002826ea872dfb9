"""COMPOSITION ROOT: the only place that picks concrete adapters (cosmicpython ``bootstrap``).

``build_container(settings, clock=…, email=…, …)`` replaces every ``None`` with the adapter the
settings name; tests pass fakes for what they control (a FrozenClock) and real parts for the rest.
``init_db``/``close_db`` open and close the ORM; ``migrate`` applies the versioned migrations.

``build_admin(settings)`` is the light composition for the operator's commands (tenant, key,
billing, audit, gdpr, download-links): the services over the database and nothing that signs,
renders or sends. The web, PDF and signing stack (aiohttp's app, pyHanko, pikepdf, reportlab,
pdfium, the development PKI) is imported inside ``build_container`` and its helpers, so a command
that does not serve pays neither its import time nor its start-up.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from tortoise import Tortoise
from tortoise.exceptions import IntegrityError

from .clock import Clock, SystemClock
from .config import ConfigurationError, Settings, check_settings, check_signing_settings
from .db.models import GatewaySecret
from .db.tortoise_config import build_config
from .db.uow import RetentionPolicy, UnitOfWork
from .domain.quota import Catalogue
from .errors import DeliveryError
from .metrics import Metrics
from .ports import (
    CeremonyHost,
    ComponentHealth,
    DocumentStore,
    EmailSender,
    HealthCheck,
    OutgoingSms,
    PageRenderer,
    PdfInspector,
    SignatureProvider,
    SmsSender,
)
from .secretbox import SecretBox
from .services.archive import ArchiveService, schedule_gc
from .services.plans import PlanService
from .services.remote import RemoteCeremonyService, WebhookSecrets, webhook_secret_loader
from .services.remote import store_webhook_secret as _store_webhook_secret
from .services.tenants import TenantService

if TYPE_CHECKING:
    from aiohttp import web

    from adapters.providers.local.pades import SigningMaterial
    from adapters.providers.local.provider import LocalProvider

    from .container import Container
    from .services.ceremony import CeremonyService


__all__ = [
    "Admin", "build_admin", "build_container", "check_admin_configuration", "check_configuration", "close_db",
    "init_db", "migrate", "store_webhook_secret",
]

log = structlog.get_logger(__name__)

REPORT_FONT = Path(__file__).resolve().parent.parent / "adapters" / "_pdf" / "fonts" / "DejaVuSans.ttf"


async def init_db(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await Tortoise.init(config=build_config(settings.resolved_database_url, pool_max=settings.database_pool_max))


async def close_db() -> None:
    """Close connections and forget the model registry (so a later ``init_db`` may use another backend)."""
    await Tortoise.close_connections()
    await Tortoise._reset_apps()


async def migrate(settings: Settings) -> None:
    """Apply every pending migration (SQLite or PostgreSQL)."""
    from tortoise.migrations.api import migrate as tortoise_migrate

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        await tortoise_migrate(config=build_config(settings.resolved_database_url))
    finally:
        await close_db()


def _secret_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    if settings.env == "prod":
        raise ConfigurationError(["ESIGN_SECRET_KEY is not set: production needs a Fernet key."])
    path = settings.data_dir / "secret.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(SecretBox.generate_key())
        os.replace(tmp, path)
    return path.read_bytes().strip()


def _signing_material(settings: Settings) -> tuple[SigningMaterial, list[web.RouteTableDef]]:
    from adapters.providers.local.dev_pki import crl_routes, ensure_dev_pki
    from adapters.providers.local.pades import SigningMaterial
    from adapters.providers.local.tsa import DevTimeStamper, tsa_routes

    if settings.signing_pkcs12_path or settings.signing_key_path:
        if settings.env == "prod" and not settings.tsa_url:
            raise ConfigurationError(["ESIGN_TSA_URL is not set: production needs a real TSA."])
        pki = ensure_dev_pki(settings.pki_dir) if not settings.tsa_url else None
        material = SigningMaterial(
            key_pem_path=settings.signing_key_path,
            cert_pem_path=settings.signing_cert_path,
            chain_pem_paths=tuple(settings.signing_chain_paths),
            pkcs12_path=settings.signing_pkcs12_path,
            pkcs12_password=(
                settings.signing_pkcs12_password.get_secret_value().encode()
                if settings.signing_pkcs12_password else None
            ),
            tsa_url=settings.tsa_url,
            dev_tsa_key_path=pki.tsa_key_path if pki else None,
            dev_tsa_cert_path=pki.tsa_cert_path if pki else None,
            trust_root_paths=tuple(settings.signing_trust_root_paths),
            crl_paths=tuple(settings.signing_crl_paths),
            fetch_revocation=True,  # real CAs publish CRL/OCSP URLs in their certificates
        )
        return material, []
    if settings.env == "prod":
        raise ConfigurationError(["ESIGN_SIGNING_PKCS12_PATH or ESIGN_SIGNING_KEY_PATH is not set."])
    pki = ensure_dev_pki(settings.pki_dir, crl_url=f"{settings.base_url}/pki/dev-ca.crl")
    material = SigningMaterial(
        key_pem_path=pki.signer_key_path,
        cert_pem_path=pki.signer_cert_path,
        chain_pem_paths=(pki.ca_cert_path,),
        tsa_url=settings.tsa_url,
        dev_tsa_key_path=pki.tsa_key_path,
        dev_tsa_cert_path=pki.tsa_cert_path,
        trust_root_paths=(pki.ca_cert_path,),
        crl_paths=(pki.crl_path,),
    )
    routes = [crl_routes(pki)]
    if not settings.tsa_url:
        routes.append(tsa_routes(DevTimeStamper.from_files(pki.tsa_cert_path, pki.tsa_key_path)))
    return material, routes


_MATERIAL_VARS = {
    "key_pem_path": "ESIGN_SIGNING_KEY_PATH", "cert_pem_path": "ESIGN_SIGNING_CERT_PATH",
    "pkcs12_path": "ESIGN_SIGNING_PKCS12_PATH", "chain_pem_paths": "ESIGN_SIGNING_CHAIN_PATHS",
    "trust_root_paths": "ESIGN_SIGNING_TRUST_ROOT_PATHS", "crl_paths": "ESIGN_SIGNING_CRL_PATHS",
}


def _check(
    settings: Settings, *, email: bool, sms: bool, signing: bool, make: bool = True
) -> tuple[list[str], tuple[SigningMaterial, list[web.RouteTableDef]] | None]:
    """Every configuration problem of what ``build_container`` builds from the settings, and the
    signing material (when there is no problem with it and ``make``: it may generate the dev PKI)."""
    from adapters.email.mime import DkimKey
    from adapters.providers.local.pades import SigningMaterial, check_material

    problems = check_settings(settings, email=email, sms=sms, signing=False)
    if email and settings.dkim_domain and settings.dkim_selector and settings.dkim_key_path:
        try:
            DkimKey.from_file(settings.dkim_domain, settings.dkim_selector, settings.dkim_key_path)
        except Exception as exc:  # a file that is no private key: dkimpy/cryptography raise several kinds
            if not any(p.startswith("ESIGN_DKIM_KEY_PATH") for p in problems):
                problems.append(f"ESIGN_DKIM_KEY_PATH: {settings.dkim_key_path} is not a private key "
                                f"({type(exc).__name__}).")
    if not signing:
        return problems, None
    problems.extend(check_signing_settings(settings))
    configured = SigningMaterial(  # the operator's files, as given (the development PKI is generated: sound)
        key_pem_path=settings.signing_key_path, cert_pem_path=settings.signing_cert_path,
        chain_pem_paths=tuple(settings.signing_chain_paths), pkcs12_path=settings.signing_pkcs12_path,
        pkcs12_password=(settings.signing_pkcs12_password.get_secret_value().encode()
                         if settings.signing_pkcs12_password else None),
        trust_root_paths=tuple(settings.signing_trust_root_paths), crl_paths=tuple(settings.signing_crl_paths),
    )
    problems.extend(f"{_MATERIAL_VARS[name]}: {text}." for name, text in check_material(configured))
    return problems, None if problems or not make else _signing_material(settings)


def check_configuration(settings: Settings) -> list[str]:
    """What ``build_container(settings)`` would refuse, as plain lines (empty: it would build)."""
    return _check(settings, email=True, sms=True, signing=True, make=False)[0]


# ----------------------------------------------------------------------------- the operator's commands

def check_admin_configuration(settings: Settings, *, secret_key: bool = False) -> list[str]:
    """What ``build_admin(settings)`` would refuse: the plans file and, with ``secret_key`` (download
    links are sealed with it), the secret key. Its commands neither sign nor send, so the signing
    identity, the TSA and the transports are ``serve``'s and ``worker``'s to check; the database
    is checked by connecting to it."""
    wanted = ("ESIGN_PLANS_FILE", "ESIGN_SECRET_KEY") if secret_key else ("ESIGN_PLANS_FILE",)
    return [p for p in check_settings(settings, email=False, sms=False, signing=False) if p.startswith(wanted)]


@dataclass(frozen=True, slots=True)
class Admin:
    """The services the operator's commands use (tenant, key, billing, audit, gdpr, download-links):
    all over the database; nothing here signs, renders a report or sends a message."""

    settings: Settings
    clock: Clock
    tenants: TenantService
    plans: PlanService
    archive: ArchiveService
    """Chain verification and GDPR export/erasure (no report renderer, no sealer)."""
    ceremony: CeremonyService | None
    """Only when asked for (``download-links revoke``): no provider, no SMS transport."""
    provider_names: tuple[str, ...]
    """The signature providers ``serve`` would build from these settings (a tenant may be given one)."""


class _NoSms:
    """The SMS transport of the operator's commands: none of them sends one."""

    async def send(self, message: OutgoingSms) -> None:
        raise DeliveryError("This command sends no SMS.")


def _admin_ceremony(settings: Settings, clock: Clock, store: DocumentStore) -> CeremonyService:
    from .services.ceremony import CeremonyService

    return CeremonyService(clock=clock, providers={}, store=store, sms=_NoSms(), box=SecretBox(_secret_key(settings)),
                           pepper=b"")


def build_admin(settings: Settings, *, clock: Clock | None = None, ceremony: bool = False) -> Admin:
    """The light composition: no development PKI, no worker pools, no web application. The secret
    key is read only with ``ceremony`` (download links are sealed with it)."""
    from adapters.storage.filesystem import FileDocumentStore

    problems = check_admin_configuration(settings, secret_key=ceremony)
    if problems:
        raise ConfigurationError(problems)
    try:
        catalogue = Catalogue.load(settings.plans_file)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # TOMLDecodeError is a ValueError
        raise ConfigurationError([f"ESIGN_PLANS_FILE: not a plans file ({type(exc).__name__}: {exc})."]) from None
    clock = clock or SystemClock()
    store = FileDocumentStore(settings.documents_dir)
    UnitOfWork.retention = RetentionPolicy(settings.retention_years, settings.unsigned_retention_days)
    return Admin(
        settings=settings, clock=clock, tenants=TenantService(clock, catalogue),
        plans=PlanService(clock=clock, catalogue=catalogue),
        archive=ArchiveService(clock=clock, store=store, renderer=None, sealer=None, providers={}),
        ceremony=_admin_ceremony(settings, clock, store) if ceremony else None,
        provider_names=("local", "digisign") if settings.digisign_configured else ("local",),
    )


def _signing_self_test(
    local: LocalProvider, *, fatal: bool
) -> tuple[Callable[[], Awaitable[None]], HealthCheck]:
    """A startup hook that signs and validates a probe PDF, and the ``signing`` readiness it leaves.

    ``fatal`` (production): a failure stops the start with a :class:`ConfigurationError`. Otherwise
    the gateway runs on and ``/readyz`` answers 503 naming the cause."""
    verdict = ComponentHealth("signing", False, "the signing self-test has not run yet")

    async def run() -> None:
        nonlocal verdict
        started = time.monotonic()
        problem = await local.self_test()
        ms = round((time.monotonic() - started) * 1000)
        if problem is None:
            verdict = ComponentHealth("signing", True, f"a probe PDF was signed and validated at start ({ms} ms)")
            log.info("signing_self_test_passed", ms=ms)
            return
        verdict = ComponentHealth("signing", False, f"the signing self-test failed: {problem}")
        log.error("signing_self_test_failed", cause=problem, fatal=fatal)
        if fatal:
            raise ConfigurationError([f"signing self-test: {problem}."])

    async def health() -> ComponentHealth:
        return verdict

    return run, health


def build_container(
    settings: Settings,
    *,
    clock: Clock | None = None,
    email: EmailSender | None = None,
    sms: SmsSender | None = None,
    store: DocumentStore | None = None,
    inspector: PdfInspector | None = None,
    providers: dict[str, SignatureProvider] | None = None,
    pages: PageRenderer | None = None,
) -> Container:
    # what serve and worker run, imported here so that build_admin's commands never load it
    from adapters.email.mime import DkimKey
    from adapters.email.outbox import OutboxEmailSender
    from adapters.email.smtp import SmtpEmailSender
    from adapters.pdf.inspector import ProcessPdfInspector
    from adapters.pdf.pages import PagesForgottenWithBlobs, PdfiumPageRenderer
    from adapters.providers.digisign.routes import inbound_routes as digisign_inbound_routes
    from adapters.providers.local.provider import LocalProvider
    from adapters.providers.local.tsa_probe import TsaProbe, dev_tsa_health
    from adapters.reports.audit_pdf import PdfReportRenderer
    from adapters.sms.http import HttpSmsSender
    from adapters.sms.outbox import OutboxSmsSender
    from adapters.storage.filesystem import FileDocumentStore
    from webhooks.delivery import WebhookDispatcher
    from webhooks.routes import routes as webhook_routes

    from .container import Container
    from .http.routes.dev import dev_outbox_routes
    from .jobs.worker import Worker
    from .messages import Operator, service_name_of
    from .services.ceremony import CeremonyService
    from .services.envelopes import EnvelopeService
    from .services.idempotency import IdempotencyService
    from .services.notifications import NotificationService

    problems, signing = _check(settings, email=email is None, sms=sms is None, signing=providers is None)
    if problems:
        raise ConfigurationError(problems)
    clock = clock or SystemClock()
    sender = settings.mail_from
    dkim = (
        DkimKey.from_file(settings.dkim_domain, settings.dkim_selector, settings.dkim_key_path)
        if settings.dkim_domain and settings.dkim_selector and settings.dkim_key_path else None
    )
    if email is None:
        if settings.smtp_url is not None:
            email = SmtpEmailSender.from_url(settings.smtp_url.get_secret_value(), sender=sender, dkim=dkim,
                                             clock=clock)
        else:
            email = OutboxEmailSender(settings.outbox_dir / "email", sender=sender, clock=clock, dkim=dkim)
    if sms is None:
        if settings.sms_url:
            token = settings.sms_token.get_secret_value() if settings.sms_token else None
            sms = HttpSmsSender(settings.sms_url, token, sender=settings.sms_sender, clock=clock)
        else:
            sms = OutboxSmsSender(settings.outbox_dir / "sms", clock=clock)
    store = store or FileDocumentStore(settings.documents_dir)
    extra_routes: list[web.RouteTableDef] = []
    startup: list = []
    shutdown: list = []
    health_checks: list[HealthCheck] = []
    if pages is None:  # the signer page's page images, cached under the data dir (docs/signer.md)
        page_renderer = PdfiumPageRenderer(
            settings.page_images_dir, workers=settings.page_image_workers,
            memory_limit_bytes=settings.pdf_parse_memory_bytes, cpu_seconds=settings.pdf_parse_cpu_seconds,
        )
        startup.append(page_renderer.start)
        shutdown.append(page_renderer.close)
        health_checks.append(page_renderer.health)
        store = PagesForgottenWithBlobs(store, page_renderer)  # no image outlives its document
        pages = page_renderer
    for transport in (email, sms):  # a real mail/SMS transport reports its outages to /readyz
        if isinstance(transport, SmtpEmailSender | HttpSmsSender):
            health_checks.append(transport.health)
    if inspector is None:
        pdf_inspector = ProcessPdfInspector(
            workers=settings.pdf_inspectors, memory_limit_bytes=settings.pdf_parse_memory_bytes,
            cpu_seconds=settings.pdf_parse_cpu_seconds, timeout_seconds=settings.pdf_parse_timeout_seconds,
            wait_seconds=settings.pdf_inspect_wait_seconds,
        )
        startup.append(pdf_inspector.start)
        shutdown.append(pdf_inspector.close)
        inspector = pdf_inspector
    built_here = providers is None
    if providers is None:
        assert signing is not None
        material, routes = signing
        extra_routes.extend(routes)
        local = LocalProvider(material, max_workers=settings.signing_workers)
        providers = {"local": local}
        if settings.digisign_configured:
            providers["digisign"] = _digisign(settings, clock)
    if built_here and settings.provider not in providers:
        raise RuntimeError(f"ESIGN_PROVIDER={settings.provider} needs its settings (ESIGN_DIGISIGN_BASE_URL, "
                           "ESIGN_DIGISIGN_ACCESS_KEY, ESIGN_DIGISIGN_SECRET_KEY).")
    for provider in providers.values():
        startup.append(provider.start)
        shutdown.append(provider.close)
        if (health := getattr(provider, "health", None)) is not None:  # a provider with workers of its own
            health_checks.append(health)
    if built_here:  # the identity is ours: prove at start that it signs (docs/operations.md)
        self_test, signing_health = _signing_self_test(local, fatal=settings.env == "prod")
        startup.append(self_test)
        health_checks.append(signing_health)
    if settings.tsa_url:  # the TSA every local signature needs, asked in the background (docs/operations.md)
        tsa = TsaProbe(settings.tsa_url, clock=clock)
        startup.append(tsa.start)
        shutdown.append(tsa.close)
        health_checks.append(tsa.health)
    else:
        health_checks.append(dev_tsa_health)
    if settings.env == "dev":
        extra_routes.append(dev_outbox_routes(settings.outbox_dir))

    box = SecretBox(_secret_key(settings))
    catalogue = Catalogue.load(settings.plans_file)
    metrics = Metrics()  # this process's registry, shared by every part that counts (GET /metrics)
    tenants = TenantService(clock, catalogue)
    plans = PlanService(clock=clock, catalogue=catalogue, metrics=metrics)
    envelopes = EnvelopeService(
        clock=clock, providers=providers, default_provider=settings.provider, store=store, inspector=inspector,
        box=box, plans=plans, metrics=metrics,
    )
    ceremony = CeremonyService(clock=clock, providers=providers, store=store, sms=sms, box=box, pepper=b"",
                               pages=pages, metrics=metrics)
    configured = settings.digisign_webhook_secrets.get_secret_value() if settings.digisign_webhook_secrets else ""
    remote = RemoteCeremonyService(  # webhook secrets: read from the database (cached briefly), no restart
        clock=clock, providers=providers, store=store,
        webhook_secrets=WebhookSecrets(clock=clock, load=webhook_secret_loader(box), configured={
            "digisign": [x.strip() for x in configured.split(",") if x.strip()]}),
    )
    notifications = NotificationService(
        clock=clock, email=email, box=box, public_url=settings.base_url, remote=remote,
        remote_providers=frozenset(n for n, p in providers.items() if p.ceremony is CeremonyHost.PROVIDER),
        metrics=metrics, service_name=service_name_of(settings.mail_from),
        operator=Operator(settings.operator_name, settings.operator_contact, settings.privacy_url),
    )
    health_checks.append(notifications.queue_health)
    dispatcher = WebhookDispatcher(clock=clock, box=box, allow_internal=settings.env in ("dev", "test"),
                                   metrics=metrics)
    shutdown.append(dispatcher.close)
    extra_routes.append(webhook_routes)
    extra_routes.append(digisign_inbound_routes(
        lambda headers, body: remote.accept_webhook("digisign", headers, body)))
    renderer = PdfReportRenderer(REPORT_FONT)
    health_checks.append(renderer.health)
    startup.append(renderer.start)
    shutdown.append(renderer.close)
    archive = ArchiveService(
        clock=clock, store=store, renderer=renderer, sealer=providers.get("local"), providers=providers,
    )
    UnitOfWork.retention = RetentionPolicy(settings.retention_years, settings.unsigned_retention_days)
    worker = Worker(
        metrics.timed_jobs({
            "send_invitation": notifications.send_invitation,
            "send_cancel_notice": notifications.send_cancel_notice,
            "send_completion": notifications.send_completion,
            "send_end_notice": notifications.send_end_notice,
            "send_reminder": notifications.send_reminder,
            "expire_envelope": envelopes.expire_job,
            "dispatch_event": dispatcher.dispatch,
            "deliver_webhook": dispatcher.deliver,
            "release_webhooks": dispatcher.release,
            "provider_send": remote.send_job,
            "provider_sync": remote.sync_job,
            "provider_cancel": remote.cancel_job,
            "provider_extend": remote.extend_job,
            "audit_report": archive.report_job,
            "lta_renewal": archive.renewal_job,
            "retention_purge": archive.purge_job,
            "blob_gc": archive.gc_job,
        }),
        clock,
        poll_seconds=settings.worker_poll_seconds,
    )
    UnitOfWork.on_jobs_committed = worker.wake  # follow-up work starts at once, not at the next poll

    async def load_secrets() -> None:
        ceremony.pepper = await _pepper(box, clock)
        await schedule_gc(clock.now() + timedelta(hours=1))

    startup.insert(0, load_secrets)
    return Container(
        settings=settings, clock=clock, providers=providers, email=email, sms=sms, store=store,
        inspector=inspector, tenants=tenants, plans=plans, idempotency=IdempotencyService(clock), remote=remote,
        archive=archive,
        envelopes=envelopes, ceremony=ceremony,
        notifications=notifications, worker=worker, box=box, extra_routes=extra_routes, startup=startup,
        shutdown=shutdown, health_checks=health_checks, metrics=metrics,
    )


def _digisign(settings: Settings, clock: Clock) -> SignatureProvider:
    from adapters.providers.digisign.client import DigiSignClient
    from adapters.providers.digisign.provider import DigiSignProvider
    from adapters.providers.digisign.signature import verify_inbound

    assert settings.digisign_base_url and settings.digisign_access_key and settings.digisign_secret_key
    client = DigiSignClient(
        settings.digisign_base_url, settings.digisign_access_key.get_secret_value(),
        settings.digisign_secret_key.get_secret_value(), clock=clock.now,
    )
    return DigiSignProvider(client, verify_signature=verify_inbound)


async def store_webhook_secret(box: SecretBox, clock: Clock, webhook_id: str, secret: str) -> None:
    """Keep a DigiSign webhook's secret (sealed) so every process verifies its deliveries (the web
    processes read it within seconds: ``services.remote.WebhookSecrets``)."""
    await _store_webhook_secret(box, clock.now(), "digisign", webhook_id, secret)


async def _pepper(box: SecretBox, clock: Clock) -> bytes:
    """The SMS-code pepper: random once, stored Fernet-sealed in the database (shared by all web processes)."""
    row = await GatewaySecret.get_or_none(name="code_pepper")
    if row is None:
        with contextlib.suppress(IntegrityError):  # another process created it first: use theirs
            await GatewaySecret.create(
                name="code_pepper", sealed=box.seal(os.urandom(32).hex()), created_at=clock.now()
            )
        row = await GatewaySecret.get(name="code_pepper")
    return bytes.fromhex(box.open(row.sealed))

