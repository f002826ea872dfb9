"""Webhook deliveries per second to a local receiver, run by hand:
``.venv/bin/python bench/webhook_throughput.py [--events 2000]``.

A scratch PostgreSQL database gets one tenant with an endpoint and N outbox events (with their
``dispatch_event`` jobs, as the state changes would write them). Then 1 and 4 worker *processes*
(each running jobs concurrently) dispatch and deliver them to an aiohttp receiver in another
process on a loopback port, which counts requests and verifies nothing (it answers 204).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

ADMIN = os.environ.get("ESIGN_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB = "esign_bench_webhooks"
KEY = b"1" * 43 + b"="


def db_url() -> str:
    return ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgres://") + f"/{DB}"


def receiver_process(port: int, ready: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *_: ready.set(), access_log=None)


async def setup(events: int, url: str) -> None:
    from esign_gateway.bootstrap import migrate
    from esign_gateway.config import Settings
    from esign_gateway.secretbox import SecretBox
    from webhooks.signing import generate_secret

    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DB}"')
    await admin.close()
    await migrate(Settings(database_url=db_url(), env="test", data_dir=Path("/tmp/esign-bench-webhooks")))
    conn = await asyncpg.connect(db_url().replace("postgres://", "postgresql://"))
    now = datetime.now(UTC)
    tenant = str(uuid.uuid4())
    await conn.execute("INSERT INTO webhook_endpoint (id, tenant_id, url, secret_sealed, enabled, created_at, "
                       "updated_at) VALUES ($1, $2, $3, $4, true, $5, $5)",
                       str(uuid.uuid4()), tenant, url, SecretBox(KEY).seal(generate_secret()), now)
    outbox, jobs = [], []
    for i in range(events):
        eid = f"evt_{uuid.uuid4().hex}"
        payload = {"id": eid, "type": "signer.viewed", "created_at": now.isoformat(),
                   "data": {"envelope": {"id": str(uuid.uuid4()), "status": "sent", "record": {"type": "deal",
                            "id": f"D-{i}", "name": None}, "metadata": {}}, "sequence": 2}}
        outbox.append((eid, tenant, payload["data"]["envelope"]["id"], "signer.viewed", now, json.dumps(payload)))
        jobs.append(("dispatch_event", json.dumps({"event_id": eid}), "pending", now, 0, 8, now))
    await conn.copy_records_to_table("outbox_event", records=outbox, columns=[
        "id", "tenant_id", "envelope_id", "type", "created_at", "payload"])
    await conn.copy_records_to_table("job", records=jobs, columns=[
        "kind", "payload", "status", "due_at", "attempts", "max_attempts", "created_at"])
    await conn.close()


def worker_process(out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> tuple[float, float]:
        from pydantic import SecretStr

        from esign_gateway.bootstrap import build_container, close_db, init_db
        from esign_gateway.config import Settings
        from esign_gateway.logging import configure_logging

        configure_logging("WARNING", json=False)
        settings = Settings(database_url=db_url(), env="test", data_dir=Path("/tmp/esign-bench-webhooks"),
                            secret_key=SecretStr(KEY.decode()), database_pool_max=10)
        container = build_container(settings, providers={}, inspector=object())  # type: ignore[arg-type]
        await init_db(settings)
        start = time.time()
        await container.worker.run_once()
        end = time.time()
        for close in container.shutdown:
            await close()
        await close_db()
        return start, end

    out.put(asyncio.run(run()))


async def delivered() -> tuple[int, int]:
    conn = await asyncpg.connect(db_url().replace("postgres://", "postgresql://"))
    ok = await conn.fetchval("SELECT count(*) FROM webhook_delivery WHERE status = 'succeeded'")
    attempts = await conn.fetchval("SELECT count(*) FROM webhook_attempt")
    await conn.close()
    return ok, attempts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = ctx.Event()
    receiver = ctx.Process(target=receiver_process, args=(port, ready), daemon=True)
    receiver.start()
    ready.wait(30)
    try:
        for workers in (1, 4):
            asyncio.run(setup(args.events, f"http://127.0.0.1:{port}/hooks"))
            out = ctx.Queue()
            procs = [ctx.Process(target=worker_process, args=(out,)) for _ in range(workers)]
            for p in procs:
                p.start()
            spans = [out.get() for _ in procs]
            for p in procs:
                p.join()
            elapsed = max(e for _, e in spans) - min(s for s, _ in spans)
            ok, attempts = asyncio.run(delivered())
            print(f"{workers} worker process(es): {ok}/{args.events} delivered ({attempts} attempts) "
                  f"in {elapsed:.1f} s = {ok / elapsed:.0f} deliveries/s")
    finally:
        receiver.terminate()


if __name__ == "__main__":
    main()
