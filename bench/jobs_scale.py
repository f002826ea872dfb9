"""Job-queue scale on PostgreSQL, run by hand: ``.venv/bin/python bench/jobs_scale.py``.

Creates a scratch database with 100 000 open envelopes (one signer each, an expiry job and a
reminder job each, inserted directly with COPY), then reports:
  * idle poll time (claim when nothing is due) — must not grow with open envelopes;
  * time for 10 000 due reminders with 1, 2 and 4 worker *processes* running the real reminder
    handler (envelope row lock, reminder_log claim, e-mail render, audit events);
  * duplicates sent (must be 0).
Needs PostgreSQL at ESIGN_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test's server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

ADMIN = os.environ.get("ESIGN_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB = "esign_bench_jobs"
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


def db_url() -> str:
    return ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgres://") + f"/{DB}"


class FrozenClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


class CountingEmail:
    def __init__(self) -> None:
        self.to: list[str] = []

    async def send(self, message) -> None:  # type: ignore[no-untyped-def]
        self.to.append(message.to)


async def setup(n: int, due: int) -> None:
    from esign_gateway.bootstrap import migrate
    from esign_gateway.config import Settings
    from esign_gateway.secretbox import SecretBox

    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DB}"')
    await admin.close()
    settings = Settings(database_url=db_url(), env="test", data_dir=Path("/tmp/esign-bench-jobs"))
    await migrate(settings)
    box = SecretBox(bench_key())
    conn = await asyncpg.connect(db_url().replace("postgres://", "postgresql://"))
    tenant = str(uuid.uuid4())
    await conn.execute("INSERT INTO tenant (id, name, mode, created_at) VALUES ($1, 'Bench', 'paid', $2)", tenant, T0)
    expires = T0 + timedelta(days=7)
    sealed = box.seal("bench-token")
    stamp = expires.isoformat()
    envelopes, signers, documents, jobs = [], [], [], []
    for i in range(n):
        eid, sid = str(uuid.uuid4()), str(uuid.uuid4())
        envelopes.append((eid, tenant, "deal", f"D-{i}", f"Smlouva {i}", "cs", "local", "sent", T0, T0, 7, expires,
                          json.dumps({"before_expiry_days": [1], "every_days": None}), "{}", 0, 0))
        signers.append((sid, eid, 0, "Jana Nováková", f"s{i}@example.cz", "+420601123456", 1, "notified",
                        uuid.uuid4().hex + uuid.uuid4().hex, sealed, T0, 0))
        documents.append((str(uuid.uuid4()), eid, 0, "a.pdf", 1, 1, "a" * 64, "a" * 64))
        slot = f"before:1d@{stamp}"
        reminder_due = T0 + timedelta(hours=1) if i < due else expires - timedelta(days=1)
        jobs.append(("send_reminder", json.dumps({"envelope_id": eid, "slot": slot, "expires_at": stamp}),
                     "pending", reminder_due, 0, 8, f"reminder:{eid}:{slot}", T0))
        jobs.append(("expire_envelope", json.dumps({"envelope_id": eid, "expires_at": stamp}), "pending", expires, 0, 8,
                     f"expire:{eid}@{stamp}", T0))
    await conn.copy_records_to_table("envelope", records=envelopes, columns=[
        "id", "tenant_id", "record_type", "record_id", "name", "language", "provider", "status", "created_at",
        "sent_at", "expires_in_days", "expires_at", "reminders", "metadata", "version", "audit_seq"])
    await conn.copy_records_to_table("signer", records=signers, columns=[
        "id", "envelope_id", "position", "name", "email", "phone", "order", "status", "token_hash", "token_sealed",
        "notified_at", "failed_attempts"])
    await conn.copy_records_to_table("document", records=documents, columns=[
        "id", "envelope_id", "position", "name", "pages", "size", "sha256", "current_sha256"])
    await conn.copy_records_to_table("job", records=jobs, columns=[
        "kind", "payload", "status", "due_at", "attempts", "max_attempts", "dedupe_key", "created_at"])
    await conn.execute("ANALYZE")
    await conn.close()


def bench_key() -> bytes:
    return b"0" * 43 + b"="


async def idle_poll_ms(samples: int = 200) -> float:
    from esign_gateway.bootstrap import close_db, init_db
    from esign_gateway.config import Settings
    from esign_gateway.db import jobs as queue

    await init_db(Settings(database_url=db_url(), env="test", data_dir=Path("/tmp/esign-bench-jobs")))
    times = []
    for _ in range(samples):  # nothing is due at T0
        t = time.perf_counter()
        claimed = await queue.claim("idle", T0, limit=10, lease=timedelta(minutes=5))
        times.append((time.perf_counter() - t) * 1000)
        assert not claimed
    await close_db()
    return statistics.median(times)


def worker_process(queue_out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> tuple[float, float, list[str]]:
        from pydantic import SecretStr

        from esign_gateway.bootstrap import build_container, close_db, init_db
        from esign_gateway.config import Settings
        from esign_gateway.jobs.worker import Worker
        from esign_gateway.logging import configure_logging

        configure_logging("WARNING", json=False)

        settings = Settings(database_url=db_url(), env="test", data_dir=Path("/tmp/esign-bench-jobs"),
                            secret_key=SecretStr(bench_key().decode()), database_pool_max=4)
        email = CountingEmail()
        clock = FrozenClock(T0 + timedelta(hours=2))
        container = build_container(settings, clock=clock, email=email, providers={}, inspector=object())  # type: ignore[arg-type]
        await init_db(settings)
        worker = Worker(container.worker.handlers, clock, batch=10)
        start = time.time()  # wall clock: comparable across processes (startup excluded)
        await worker.run_once()
        end = time.time()
        await close_db()
        return start, end, email.to

    queue_out.put(asyncio.run(run()))


async def reset_due(due: int) -> None:
    conn = await asyncpg.connect(db_url().replace("postgres://", "postgresql://"))
    await conn.execute("DELETE FROM reminder_log")
    await conn.execute("DELETE FROM audit_event")
    await conn.execute("UPDATE envelope SET audit_seq = 0, audit_head = NULL")
    await conn.execute(
        "UPDATE job SET status='pending', attempts=0, locked_by=NULL, locked_until=NULL, due_at=$1 "
        "WHERE kind='send_reminder' AND (status <> 'pending' OR due_at <= $1)", T0 + timedelta(hours=1))
    await conn.close()


def run_workers(count: int) -> tuple[float, Counter[str]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker_process, args=(out,)) for _ in range(count)]
    for p in procs:
        p.start()
    sent: Counter[str] = Counter()
    starts, ends = [], []
    for _ in procs:
        start, end, to = out.get()
        starts.append(start)
        ends.append(end)
        sent.update(to)
    for p in procs:
        p.join()
    return max(ends) - min(starts), sent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envelopes", type=int, default=100_000)
    ap.add_argument("--due", type=int, default=10_000)
    args = ap.parse_args()
    t = time.perf_counter()
    asyncio.run(setup(args.envelopes, args.due))
    print(f"setup: {args.envelopes} open envelopes, {2 * args.envelopes} jobs, {time.perf_counter() - t:.1f} s")
    print(f"idle poll (claim, nothing due), median: {asyncio.run(idle_poll_ms()):.2f} ms")
    for workers in (1, 2, 4):
        asyncio.run(reset_due(args.due))
        elapsed, sent = run_workers(workers)
        dupes = sum(c - 1 for c in sent.values() if c > 1)
        print(f"{workers} worker process(es): {sum(sent.values())} reminders in {elapsed:.1f} s "
              f"({sum(sent.values()) / elapsed:.0f}/s), distinct signers {len(sent)}, duplicates {dupes}")


if __name__ == "__main__":
    main()
