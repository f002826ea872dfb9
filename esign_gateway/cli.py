"""``esign-gateway`` command line: parse arguments, call bootstrap and services, print."""

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
from decimal import Decimal
from typing import Any

from aiohttp import web

from . import backup_cli
from .bootstrap import build_container, check_configuration, close_db, init_db, migrate, store_webhook_secret
from .config import ConfigurationError, Settings, read_settings
from .container import Container
from .errors import GatewayError, ValidationFailedError
from .http.app import create_app
from .http.server import KEEPALIVE_SECONDS, listen
from .logging import configure_logging
from .services.plans import BILLING_COLUMNS, PlanState

__all__ = ["main"]

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
    update.add_argument("--expiry-days", type=int, help="default expiry of this tenant's envelopes (1..90)")
    update.add_argument("--provider", help="this tenant's signature provider (local, digisign); 'default' clears it")
    update.add_argument("--contact-email", help="the sender's contact: gets the completion e-mail with the result")
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
    register = digisign.add_parser("register-webhooks", help="register this gateway's webhooks at DigiSign")
    register.add_argument("--url", help="public URL of /webhooks/digisign (default: ESIGN_PUBLIC_URL + that path)")

    backup_cli.add_parsers(sub)

    key = sub.add_parser("key", help="manage API keys").add_subparsers(dest="action", required=True)
    kcreate = key.add_parser("create")
    kcreate.add_argument("--role", choices=["integration", "support", "operator"], required=True)
    kcreate.add_argument("--tenant")
    kcreate.add_argument("--json", action="store_true")
    krevoke = key.add_parser("revoke")
    krevoke.add_argument("prefix", metavar="KEY",
                         help="the key id that `key create` prints, or the key's first 8 or more characters")
    return p


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
    print(f"esign-gateway listening on http://{host}:{port}", flush=True)
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
    try:
        await asyncio.gather(*(container.worker.run(stop) for _ in range(max(1, args.concurrency))))
    finally:
        for close in reversed(container.shutdown):
            await close()
        await close_db()


async def _tenant(settings: Settings, args: argparse.Namespace) -> None:
    async def run(c: Container) -> None:
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
            if args.provider and args.provider != "default" and args.provider not in c.providers:
                known = ", ".join(c.providers)
                raise ValidationFailedError(errors=[{"field": "provider", "message": f"one of {known}"}])
            tenant = await c.tenants.update_tenant(args.tenant_id, paid=paid, name=args.name,
                                                   expiry_days=args.expiry_days, provider=args.provider,
                                                   contact_email=args.contact_email)
            if args.plan:
                await c.plans.change(tenant.id, args.plan, documents=args.documents, fee=args.fee, actor="operator")
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

    await _with_db(settings, run)


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
    async def run(c: Container) -> int:
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

    return int(await _with_db(settings, run))


async def _gdpr(settings: Settings, args: argparse.Namespace) -> None:
    async def run(c: Container) -> None:
        if args.action == "export":
            print(json.dumps(await c.archive.gdpr_export(args.email), ensure_ascii=False, indent=2))
            return
        report = await c.archive.gdpr_erase(args.email)
        for envelope_id in report.erased:
            print(f"erased  {envelope_id}")
        for envelope_id, why in report.kept:
            print(f"kept    {envelope_id}  {why}")
        print(f"{len(report.erased)} erased, {len(report.kept)} kept")

    await _with_db(settings, run)


async def _download_links(settings: Settings, args: argparse.Namespace) -> None:
    async def run(c: Container) -> None:
        count = await c.ceremony.revoke_download_links(args.envelope_id, None, actor="support")
        print(f"revoked {count} download link(s) of {args.envelope_id}")

    await _with_db(settings, run)


def _cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first)
    gets a leading apostrophe (OWASP's CSV injection advice); numbers stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


async def _billing(settings: Settings, args: argparse.Namespace) -> None:
    async def run(c: Container) -> None:
        lines = [line.as_dict() for line in await c.plans.billing(args.month)]
        if args.format == "json":
            print(json.dumps(lines, ensure_ascii=False, indent=2))
            return
        out = csv.DictWriter(sys.stdout, fieldnames=BILLING_COLUMNS, lineterminator="\n")
        out.writeheader()
        out.writerows({k: _cell(v) for k, v in line.items()} for line in lines)

    await _with_db(settings, run)


async def _digisign(settings: Settings, args: argparse.Namespace) -> None:
    async def run(c: Container) -> None:
        provider = c.providers.get("digisign")
        if provider is None or not hasattr(provider, "register_webhooks"):
            raise GatewayError(
                "Configure ESIGN_DIGISIGN_BASE_URL, ESIGN_DIGISIGN_ACCESS_KEY and ESIGN_DIGISIGN_SECRET_KEY."
            )
        url = args.url or f"{settings.base_url}/webhooks/digisign"
        await provider.start()
        try:
            created = await provider.register_webhooks(url)
        finally:
            await provider.close()
        for hook in created:  # each webhook has its own secret; every process loads them at start
            await store_webhook_secret(c.box, c.clock, hook["id"], hook["secret"])
            print(f"registered {hook['event']} -> {url}")
        print(f"{len(created)} webhook(s) registered; their secrets are stored (sealed) in the database")

    await _with_db(settings, run)


async def _key(settings: Settings, args: argparse.Namespace) -> None:
    async def run(c: Container) -> None:
        if args.action == "create":
            key = await c.tenants.create_key(args.role, tenant_id=args.tenant)
            if args.json:
                print(json.dumps({"key_id": key.id, "api_key": key.secret, "role": args.role}))
            else:
                print(f"{args.role} API key (shown once): {key.secret}\nkey id: {key.id}")
        else:
            count = await c.tenants.revoke_key(args.prefix)
            print(f"revoked {count} key(s)")

    await _with_db(settings, run)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings, unreadable = read_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    try:
        if unreadable:  # report them with everything else that is wrong, in one go
            raise ConfigurationError(unreadable + ([] if args.command == "migrate" else check_configuration(settings)))
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
            asyncio.run(_tenant(settings, args))
        elif args.command == "key":
            asyncio.run(_key(settings, args))
        elif args.command == "billing":
            asyncio.run(_billing(settings, args))
        elif args.command == "digisign":
            asyncio.run(_digisign(settings, args))
        elif args.command == "audit":
            return asyncio.run(_audit(settings, args))
        elif args.command == "gdpr":
            asyncio.run(_gdpr(settings, args))
        elif args.command == "download-links":
            asyncio.run(_download_links(settings, args))
    except ConfigurationError as err:
        print(_configuration_text(err.problems), file=sys.stderr, end="")
        return 2
    except GatewayError as err:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in err.errors or []) or err.detail
        print(f"error: {detail}", file=sys.stderr)
        return 2
    return 0
