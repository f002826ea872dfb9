"""Several workers on one job table: every reminder exactly once; a dead worker's job finishes elsewhere.

Runs on SQLite and, when ESIGN_TEST_DATABASE_URL is set (CI), on PostgreSQL, where the workers
really claim in parallel over separate pooled connections (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from esign_gateway.container import Container
from esign_gateway.db.models import Job
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.domain.envelope import Document, Envelope, Signer
from esign_gateway.domain.ids import uuid7
from esign_gateway.jobs.worker import Worker
from esign_gateway.ports import OutgoingEmail
from esign_gateway.services.envelopes import issue_signer_links, plan_envelope_jobs


class RecordingEmail:
    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []

    async def send(self, message: OutgoingEmail) -> None:
        await asyncio.sleep(0)  # yield, so workers interleave
        self.sent.append(message)


async def _open_envelopes(container: Container, count: int) -> None:
    tenant, _ = await container.tenants.create_tenant("Hromadná s.r.o.", paid=True)
    now = container.clock.now()
    for i in range(count):
        env = Envelope(
            id=str(uuid7()), tenant_id=tenant.id, record_type="deal", record_id=f"D-{i}", record_name=None,
            name=f"Smlouva {i}", message=None, language="cs", provider="local", created_at=now,
            documents=[Document(id=str(uuid7()), name="a.pdf", pages=1, size=1, sha256="a" * 64,
                                current_sha256="a" * 64)],
            signers=[Signer(id=str(uuid7()), name="Jana", email=f"s{i}@example.cz", phone="+420601123456", order=1)],
        )
        async with UnitOfWork() as uow:
            await uow.envelopes.add(env, tenant.id)
            notified = env.send(now)
            await issue_signer_links(uow, container.ceremony.box, env, notified, now)
            await plan_envelope_jobs(uow, env, now)
            await uow.envelopes.save(env)


async def test_four_workers_send_500_due_reminders_each_exactly_once(container: Container) -> None:
    await _open_envelopes(container, 500)
    await Job.filter(kind__in=("send_invitation", "dispatch_event")).delete()
    email = RecordingEmail()
    container.notifications.email = email
    container.clock.advance(days=6)  # type: ignore[attr-defined]  # every "1 day before expiry" slot is due
    workers = [Worker(container.worker.handlers, container.clock, batch=5) for _ in range(4)]
    ran = await asyncio.gather(*(w.run_once() for w in workers))
    assert sum(ran) >= 500  # the reminders, plus the webhook dispatch of their envelope.reminder_sent events
    counts = Counter(m.to for m in email.sent)
    assert len(counts) == 500 and set(counts.values()) == {1}
    assert await Job.filter(kind="send_reminder", status="done").count() == 500
    if container.settings.resolved_database_url.startswith("postgres"):
        assert sum(1 for r in ran if r) >= 2  # the work really was shared


async def test_job_of_a_killed_worker_is_finished_by_another_after_the_lease(container: Container) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(payload: dict[str, Any]) -> None:
        if not finished and not started.is_set():
            started.set()
            await asyncio.Event().wait()  # hangs until the worker is killed
        finished.append(payload["id"])

    from tortoise.transactions import in_transaction

    from esign_gateway.db.jobs import JobRepository

    async with in_transaction("default") as conn:
        await JobRepository(conn).enqueue("slow", {"id": "x"}, container.clock.now())
    lease = timedelta(minutes=5)
    # concurrency=1: the worker is inside the job (not inside a claim query) when it dies
    doomed = Worker({"slow": slow}, container.clock, lease=lease, concurrency=1)
    task = asyncio.create_task(doomed.run_once())
    await started.wait()
    task.cancel()  # the worker dies mid-job
    await asyncio.gather(task, return_exceptions=True)
    job = await Job.get(kind="slow")
    assert job.status == "running"
    rescuer = Worker({"slow": slow}, container.clock, lease=lease)
    assert await rescuer.run_once() == 0
    container.clock.advance(minutes=5, seconds=1)  # type: ignore[attr-defined]
    assert await rescuer.run_once() == 1
    assert finished == ["x"]
    assert (await Job.get(kind="slow")).status == "done"
