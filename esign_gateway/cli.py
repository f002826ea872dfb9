"""``esign-gateway`` command line: parse arguments, call bootstrap and services, print.

``serve`` and ``worker`` build the whole container (``bootstrap.build_container``: the development
PKI, the signing, inspection and report pools, the web application). The operator's commands
(tenant, key, billing, audit, gdpr, download-links) build ``bootstrap.build_admin``: the services
over the database only, so they start in a fraction of a second. The web stack is imported inside
``_serve``. A command that did nothing exits non-zero with one plain line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tortoise.exceptions import DBConnectionError, OperationalError

from . import backup_cli
from .bootstrap import (
    Admin,
    build_admin,
    build_container,
    check_admin_configuration,
    check_configuration,
    close_db,
    init_db,
    migrate,
    store_webhook_secret,
)
from .config import ConfigurationError, Settings, read_settings
from .domain.policy import MAX_EXPIRY_DAYS
from .errors import GatewayError, NotFoundError, ValidationFailedError
from .logging import configure_logging
from .services.plans import BILLING_COLUMNS, PlanState

if TYPE_CHECKING:
    from .container import Container

__all__ = ["main"]

SERVING = ("serve", "worker", "digisign")
"""Commands that build the whole container (and check the whole configuration)."""
ADMIN = ("tenant", "key", "billing", "audit", "gdpr", "download-links")
"""Commands that build only ``bootstrap.build_admin``."""

DEMO_FILE = "demo-tenant.json"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="esign-gateway", description="Electronic signature gateway for a CRM.")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (with an embedded worker)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-worker", action="store_true", help="do not run the embedded job worker")
    serve.add_argument("--demo", action="store_true", help="create a demo tenant on first start and print its key")

    worker = sub.add_parser("worker", help="run a job worker alone")
    worker.add_argument("--concurrency", type=int, default=1)

    sub.add_parser("migrate", help="apply database migrations")

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(dest="action", required=True)
    create = tenant.add_parser("create")
    create.add_argument("--name", required=True)
    mode = create.add_mutually_exclusive_group()
    mode.add_argument("--paid", action="store_true")
    mode.add_argument("--trial", action="store_true")
    create.add_argument("--json", action="store_true")
    update = tenant.add_parser("update")
    update.add_argument("tenant_id")
    update.add_argument("--name")
    update.add_argument(
        "--expiry-days", type=int, help=f"default expiry of this tenant's envelopes (1..{MAX_EXPIRY_DAYS})"
    )
    update.add_argument("--provider", help="this tenant's signature provider (local, digisign); 'default' clears it")
    update.add_argument("--contact-email", help="the sender's contact: gets the completion e-mail with the result")
    update.add_argument("--display-name", help="the From display name of its e-mails ('' returns to "
                        "'<name> via <gateway>')")
    update.add_argument("--logo", help="a PNG or JPEG (at most 200 KB) on the signer's page and in e-mails")
    update.add_argument("--no-logo", action="store_true", help="remove the logo")
    update.add_argument("--accent", help="accent colour of the page and e-mails, #rrggbb; 'default' clears it")
    umode = update.add_mutually_exclusive_group()
    umode.add_argument("--paid", action="store_true")
    umode.add_argument("--trial", action="store_true")
    for cmd in (create, update):
        cmd.add_argument("--plan", help="a plan code from the plans file (raise: at once; lower: next month)")
        cmd.add_argument("--documents", type=int, help="documents per month, for --plan custom")
        cmd.add_argument("--fee", type=Decimal, help="monthly fee, for --plan custom")
    tlist = tenant.add_parser("list")
    tlist.add_argument("--json", action="store_true")

    audit = sub.add_parser("audit", help="evidence").add_subparsers(dest="action", required=True)
    verify = audit.add_parser("verify", help="recompute audit hash chains; report the first broken link")
    which = verify.add_mutually_exclusive_group(required=True)
    which.add_argument("envelope_id", nargs="?")
    which.add_argument("--all", action="store_true")

    gdpr = sub.add_parser("gdpr", help="a signer's personal data").add_subparsers(dest="action", required=True)
    for name, text in (("export", "everything held about a signer, as JSON"),
                       ("erase", "erase a signer's personal data except what the law keeps")):
        cmd = gdpr.add_parser(name, help=text)
        cmd.add_argument("--email", required=True)

    links = sub.add_parser("download-links", help="the signers' links to a signed result").add_subparsers(
        dest="action", required=True)
    lrevoke = links.add_parser("revoke", help="make every download link of a completed envelope answer 410")
    lrevoke.add_argument("envelope_id")

    billing = sub.add_parser("billing", help="invoice data").add_subparsers(dest="action", required=True)
    export = billing.add_parser("export", help="one line per tenant: plan, monthly fee, documents sent")
    export.add_argument("--month", required=True, help="YYYY-MM (calendar month in Europe/Prague)")
    export.add_argument("--format", choices=["csv", "json"], default="csv")

    digisign = sub.add_parser("digisign", help="the DigiSign provider").add_subparsers(dest="action", required=True)
    register = digisign.add_parser("register-webhooks", help="register this gateway's webhooks at DigiSign and store "
                                   "the secrets of every one (new or already there)")
    register.add_argument("--url", help="public URL of /webhooks/digisign (default: ESIGN_PUBLIC_URL + that path)")
    digisign.add_parser("check", help="compare the adapter's states, notification types, verification methods and "
                        "events with DigiSign's enums and /api/docs.json (exit 1 on a difference that matters)")

    backup_cli.add_parsers(sub)

    key = sub.add_parser("key", help="manage API keys").add_subparsers(dest="action", required=True)
    kcreate = key.add_parser("create")
    kcreate.add_argument("--role", choices=["integration", "support", "operator"], required=True)
    kcreate.add_argument("--tenant")
    kcreate.add_argument("--json", action="store_true")
    krevoke = key.add_parser("revoke")
    krevoke.add_argument("prefix", metavar="KEY",
                         help="the key id that `key create` prints, or the key's first 8 or more characters")
    klist = key.add_parser("list", help="every key (live and revoked): id, prefix, role, tenant; never the secret")
    klist.add_argument("--tenant", help="only this tenant's keys")
    klist.add_argument("--json", action="store_true")
    return p


async def _with_admin(settings: Settings, fn: Callable[[Admin], Awaitable[int]], *, ceremony: bool = False) -> int:
    admin = build_admin(settings, ceremony=ceremony)
    await init_db(settings)
    try:
        return await fn(admin)
    finally:
        await close_db()


async def _with_db(settings: Settings, fn: Callable[[Container], Awaitable[Any]]) -> Any:
    container = build_container(settings)
    await init_db(settings)
    try:
        return await fn(container)
    finally:
        await close_db()


def _demo_pdf() -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.setFont("Helvetica", 16)
    c.drawString(72, 770, "Sample contract - esign-gateway demo")
    c.setFont("Helvetica", 11)
    c.drawString(72, 740, "Sign this document to try the ceremony end to end.")
    c.showPage()
    c.save()
    return buf.getvalue()


async def _ensure_demo(settings: Settings, container: Container) -> None:
    """First start of ``make run``: a paid demo tenant, its key and a ready-to-send request body."""
    path = settings.data_dir / DEMO_FILE
    body_path = settings.data_dir / "demo-envelope.json"
    if not path.exists():
        tenant, key = await container.tenants.create_tenant("Demo s.r.o.", paid=True, plan_code="m")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"tenant_id": tenant.id, "api_key": key.secret}, fh)
    if not body_path.exists():
        body = {
            "record": {"type": "deal", "id": "D-2026-0042", "name": "Dodávka serverů"},
            "name": "Smlouva o dílo 2026/042",
            "message": "Dobrý den, prosím o podpis smlouvy.",
            "documents": [{"name": "smlouva.pdf", "content": base64.b64encode(_demo_pdf()).decode()}],
            "signers": [{"name": "Jana Nováková", "email": "jana@example.cz", "phone": "+420601123456"}],
        }
        body_path.write_text(json.dumps(body, ensure_ascii=False, indent=2))
    demo = json.loads(path.read_text())
    base = settings.base_url
    print(
        f"\nDemo tenant {demo['tenant_id']}; its API key (also in {path}):\n  {demo['api_key']}\n\n"
        "Send a document for signature:\n"
        f"  curl -sS -X POST {base}/v1/envelopes -H 'Authorization: Bearer {demo['api_key']}' \\\n"
        f"       -H 'Content-Type: application/json' --data @{body_path}\n"
        f"Then open {base}/dev/outbox: click the link in the e-mail, ask for the code, read it in the SMS list.\n",
        flush=True,
    )


async def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from aiohttp import web

    from .http.app import create_app
    from .http.server import KEEPALIVE_SECONDS, listen

    host = args.host or settings.host
    port = args.port or settings.port
    settings = settings.model_copy(update={"host": host, "port": port})
    container = build_container(settings)
    await init_db(settings)
    if args.demo:
        await _ensure_demo(settings, container)
    app = create_app(container, run_worker=False if args.no_worker else None)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE_SECONDS)
    try:
        await runner.setup()
    except ConfigurationError:  # the signing self-test refused the identity (prod): stop what had started
        await _shutdown(container)
        raise
    server = await listen(runner, host, port)  # with a header-read deadline (slowloris)
    _announce(settings, f"esign-gateway listening on http://{host}:{port}", "listening", url=f"http://{host}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await runner.cleanup()
        await close_db()


def _announce(settings: Settings, plain: str, event: str, **fields: str) -> None:
    """A long-running process says where it listens: a log line when every line must be JSON
    (``ESIGN_LOG_JSON=true``), else the plain text."""
    if settings.log_json:
        import structlog

        structlog.get_logger("esign_gateway.cli").info(event, **fields)
    else:
        print(plain, flush=True)


async def _shutdown(container: Container) -> None:
    """After a start that failed: close whatever had started, then the database."""
    for close in reversed(container.shutdown):
        await close()
    await close_db()


def _configuration_text(problems: list[str]) -> str:
    head = "a configuration problem" if len(problems) == 1 else f"{len(problems)} configuration problems"
    return f"esign-gateway did not start: {head}\n" + "".join(f"  - {p}\n" for p in problems)


async def _worker(settings: Settings, args: argparse.Namespace) -> None:
    container = build_container(settings)
    await init_db(settings)
    try:
        for start in container.startup:
            await start()
    except ConfigurationError:
        await _shutdown(container)
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from .http.routes.metrics import serve_metrics  # the worker's own /metrics (ESIGN_WORKER_METRICS_PORT)

    metrics = await serve_metrics(container)
    if metrics is not None:
        url = f"http://{metrics.addresses[0][0]}:{metrics.addresses[0][1]}/metrics"
        _announce(settings, f"esign-gateway worker metrics on {url}", "worker_metrics_listening", url=url)
    try:
        await asyncio.gather(*(container.worker.run(stop) for _ in range(max(1, args.concurrency))))
    finally:
        if metrics is not None:
            await metrics.cleanup()
        for close in reversed(container.shutdown):
            await close()
        await close_db()


def _nothing_to_change(args: argparse.Namespace) -> bool:
    return all(v is None or v is False for v in (args.name, args.paid, args.trial, args.expiry_days, args.provider,
                                                   args.contact_email, args.plan, args.display_name, args.logo,
                                                   args.no_logo, args.accent))


async def _tenant(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "update" and _nothing_to_change(args):
        raise ValidationFailedError("nothing to change: give --name, --paid or --trial, --expiry-days, --provider, "
                                    "--contact-email or --plan")

    async def run(c: Admin) -> int:
        if args.action == "create":
            tenant, key = await c.tenants.create_tenant(
                args.name, paid=args.paid, plan_code=args.plan or "free", documents=args.documents, fee=args.fee
            )
            if args.json:
                print(json.dumps({"tenant_id": tenant.id, "api_key": key.secret}))
            else:
                print(f"tenant {tenant.id} ({tenant.mode})\nintegration API key (shown once): {key.secret}")
        elif args.action == "update":
            paid = True if args.paid else False if args.trial else None
            if args.provider and args.provider != "default" and args.provider not in c.provider_names:
                known = ", ".join(c.provider_names)
                raise ValidationFailedError(errors=[{"field": "provider", "message": f"one of {known}"}])
            tenant = await c.tenants.update_tenant(args.tenant_id, paid=paid, name=args.name,
                                                   expiry_days=args.expiry_days, provider=args.provider,
                                                   contact_email=args.contact_email)
            if args.plan:
                await c.plans.change(tenant.id, args.plan, documents=args.documents, fee=args.fee, actor="operator")
            if any(v is not None and v is not False for v in (args.display_name, args.logo, args.no_logo, args.accent)):
                from .services.branding import MAX_LOGO_BYTES, set_branding

                logo = None
                if args.logo is not None:
                    try:
                        with open(args.logo, "rb") as fh:  # noqa: ASYNC230 - one small file, from the operator
                            logo = fh.read(MAX_LOGO_BYTES + 1)  # one byte more is enough to refuse it
                    except OSError as exc:
                        raise ValidationFailedError(errors=[{"field": "logo", "message": exc.strerror or "unreadable"}]
                                                    ) from None
                await set_branding(tenant.id, display_name=args.display_name, logo=logo,
                                   accent=None if args.accent in (None, "default") else args.accent,
                                   clear_logo=args.no_logo, clear_accent=args.accent == "default")
            print(f"tenant {tenant.id} {tenant.name!r} {tenant.mode} {_plan_text(await c.plans.state(tenant.id))}")
        else:
            rows = [(t, await c.plans.state(t.id)) for t in await c.tenants.list_tenants()]
            if args.json:
                print(json.dumps([
                    {"id": t.id, "name": t.name, "mode": t.mode, "plan": s.current.code if s.current else None,
                     "signing_enabled": s.enabled, "pending_plan": s.pending.code if s.pending else None}
                    for t, s in rows
                ]))
            for t, s in [] if args.json else rows:
                print(f"{t.id}  {t.mode:5}  {_plan_text(s):28}  {t.name}")
        return 0

    return await _with_admin(settings, run)


def _plan_text(state: PlanState) -> str:
    if state.current is None:
        return "no plan"
    text = f"plan {state.current.code} ({state.current.documents} docs, {state.current.fee:.2f}/month)"
    if not state.enabled:
        text += " terminated"
    if state.pending is not None:
        text += f", {state.pending.code} from {state.pending.effective_at:%Y-%m-%d %H:%M} UTC"
    return text


async def _audit(settings: Settings, args: argparse.Namespace) -> int:
    async def run(c: Admin) -> int:
        reports = await c.archive.verify_chains(None if args.all else args.envelope_id)
        broken = 0
        for r in reports:
            if r.broken_at is None:
                print(f"ok      {r.envelope_id}  {r.events} events")
            else:
                broken += 1
                print(f"BROKEN  {r.envelope_id}  first broken link at event {r.broken_at} of {r.events}")
        print(f"{len(reports)} chain(s) checked, {broken} broken")
        return 1 if broken else 0

    return await _with_admin(settings, run)


async def _gdpr(settings: Settings, args: argparse.Namespace) -> int:
    """``export`` prints what is held even when it is nothing (the answer to the data subject) but
    exits 1 then; ``erase`` of an address no signer has is an error (2); one that erased nothing
    because the law keeps every envelope exits 1 with the reasons."""
    async def run(c: Admin) -> int:
        if args.action == "export":
            export = await c.archive.gdpr_export(args.email)
            print(json.dumps(export, ensure_ascii=False, indent=2))
            if not export["envelopes"]:
                print("no signer has this e-mail address: nothing is held", file=sys.stderr)
                return 1
            return 0
        report = await c.archive.gdpr_erase(args.email)
        if not report.erased and not report.kept:
            raise NotFoundError("no signer has this e-mail address: nothing was erased")
        for envelope_id in report.erased:
            print(f"erased  {envelope_id}")
        for envelope_id, why in report.kept:
            print(f"kept    {envelope_id}  {why}")
        print(f"{len(report.erased)} erased, {len(report.kept)} kept")
        return 0 if report.erased else 1

    return await _with_admin(settings, run)


async def _download_links(settings: Settings, args: argparse.Namespace) -> int:
    async def run(c: Admin) -> int:
        assert c.ceremony is not None
        count = await c.ceremony.revoke_download_links(args.envelope_id, None, actor="support")
        print(f"revoked {count} download link(s) of {args.envelope_id}")
        return 0

    return await _with_admin(settings, run, ceremony=True)


def _cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first)
    gets a leading apostrophe (OWASP's CSV injection advice); numbers stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


async def _billing(settings: Settings, args: argparse.Namespace) -> int:
    async def run(c: Admin) -> int:
        lines = [line.as_dict() for line in await c.plans.billing(args.month)]
        if args.format == "json":
            print(json.dumps(lines, ensure_ascii=False, indent=2))
            return 0
        out = csv.DictWriter(sys.stdout, fieldnames=BILLING_COLUMNS, lineterminator="\n")
        out.writeheader()
        out.writerows({k: _cell(v) for k, v in line.items()} for line in lines)
        return 0

    return await _with_admin(settings, run)


async def _digisign(settings: Settings, args: argparse.Namespace) -> None:
    from adapters.providers.digisign.check import compare, report
    from adapters.providers.digisign.provider import DigiSignProvider

    def provider_of(c: Container) -> DigiSignProvider:
        provider = c.providers.get("digisign")
        if not isinstance(provider, DigiSignProvider):
            raise GatewayError(
                "Configure ESIGN_DIGISIGN_BASE_URL, ESIGN_DIGISIGN_ACCESS_KEY and ESIGN_DIGISIGN_SECRET_KEY."
            )
        return provider

    if args.action == "check":  # DigiSign only: no database
        provider = provider_of(build_container(settings))
        await provider.start()
        try:
            results, docs_read = await compare(provider.client)
        finally:
            await provider.close()
        print(f"DigiSign at {provider.client.base_url}:")
        for line in report(results, docs_read):
            print(f"  {line}")
        if any(r.problem for r in results):
            print("The adapter's literals differ from DigiSign's: see docs/digisign.md before going live.")
            raise SystemExit(1)
        return

    async def run(c: Container) -> None:
        provider = provider_of(c)
        url = args.url or f"{settings.base_url}/webhooks/digisign"
        await provider.start()
        try:
            hooks = await provider.register_webhooks(url)
        finally:
            await provider.close()
        for hook in hooks:  # each webhook has its own secret; every web process reads them within seconds
            await store_webhook_secret(c.box, c.clock, hook["id"], hook["secret"])
            said = {"created": "registered", "existing": "already registered, secret stored",
                    "recreated": "re-created (DigiSign did not show its secret), secret stored"}[hook["action"]]
            paused = f" — its status is {hook['status']}: enable it in DigiSign" if hook.get("status") not in (
                None, "enabled") else ""
            print(f"{hook['event']} -> {url}: {said}{paused}")
        made = sum(1 for h in hooks if h["action"] != "existing")
        print(f"{made} webhook(s) registered, {len(hooks) - made} already there; the secrets of all {len(hooks)} are "
              "stored (sealed) in the database")

    await _with_db(settings, run)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else ""


async def _key(settings: Settings, args: argparse.Namespace) -> int:
    async def run(c: Admin) -> int:
        if args.action == "list":
            keys = await c.tenants.list_keys(args.tenant)
            if args.json:
                print(json.dumps([
                    {"id": k.id, "prefix": k.prefix, "role": k.role, "tenant_id": k.tenant_id,
                     "tenant_name": k.tenant_name, "created_at": k.created_at.isoformat(),
                     "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
                    for k in keys
                ], ensure_ascii=False))
                return 0
            for k in keys:
                state = f"revoked {_when(k.revoked_at)}" if k.revoked_at else "live"
                tenant = f"{k.tenant_id} {k.tenant_name}" if k.tenant_id else "(all tenants)"
                print(f"{k.id}  {k.prefix}  {k.role:11}  created {_when(k.created_at)}  {state:24}  {tenant}")
            return 0
        if args.action == "create":
            key = await c.tenants.create_key(args.role, tenant_id=args.tenant)
            if args.json:
                print(json.dumps({"key_id": key.id, "api_key": key.secret, "role": args.role}))
            else:
                print(f"{args.role} API key (shown once): {key.secret}\nkey id: {key.id}")
        else:
            count = await c.tenants.revoke_key(args.prefix)
            print(f"revoked {count} key(s)")
        return 0

    return await _with_admin(settings, run)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings, unreadable = read_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    try:
        if unreadable:  # report them with everything else this command would refuse, in one go
            more = (check_configuration(settings) if args.command in SERVING
                    else check_admin_configuration(settings, secret_key=args.command == "download-links")
                    if args.command in ADMIN else [])
            raise ConfigurationError(unreadable + more)
        if args.command in ("backup", "restore", "backup-verify"):
            return backup_cli.run(settings, args)
        if args.command == "migrate":
            asyncio.run(migrate(settings))
            print("migrations applied")
        elif args.command == "serve":
            asyncio.run(_serve(settings, args))
        elif args.command == "worker":
            asyncio.run(_worker(settings, args))
        elif args.command == "tenant":
            return asyncio.run(_tenant(settings, args))
        elif args.command == "key":
            return asyncio.run(_key(settings, args))
        elif args.command == "billing":
            return asyncio.run(_billing(settings, args))
        elif args.command == "digisign":
            asyncio.run(_digisign(settings, args))
        elif args.command == "audit":
            return asyncio.run(_audit(settings, args))
        elif args.command == "gdpr":
            return asyncio.run(_gdpr(settings, args))
        elif args.command == "download-links":
            return asyncio.run(_download_links(settings, args))
    except ConfigurationError as err:
        print(_configuration_text(err.problems), file=sys.stderr, end="")
        return 2
    except GatewayError as err:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in err.errors or []) or err.detail
        print(f"error: {detail}", file=sys.stderr)
        return 2
    except (DBConnectionError, OperationalError) as err:  # no server, or no tables yet: one line, no traceback
        print(f"error: the database: {err} (is it running, and migrated with `esign-gateway migrate`?)",
              file=sys.stderr)
        return 2
    return 0
