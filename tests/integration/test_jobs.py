"""The durable job table: retries with backoff, a visible failed state, leases that outlive a dead worker."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tortoise.transactions import in_transaction

from esign_gateway.container import Container
from esign_gateway.db import jobs as queue
from esign_gateway.db.models import Job
from esign_gateway.db.uow import UnitOfWork
from esign_gateway.jobs.worker import Worker


async def _enqueue(container: Container, kind: str, payload: dict[str, Any], *, max_attempts: int = 3) -> None:
    async with in_transaction("default") as conn:
        await queue.JobRepository(conn).enqueue(kind, payload, container.clock.now(), max_attempts=max_attempts)


async def test_failing_job_retries_with_backoff_then_is_failed(container: Container) -> None:
    calls: list[int] = []

    async def flaky(payload: dict[str, Any]) -> None:
        calls.append(payload["n"])
        raise RuntimeError("SMTP down")

    worker = Worker({"flaky": flaky}, container.clock)
    await _enqueue(container, "flaky", {"n": 1})
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0  # not due again until the backoff passes
    job = await Job.get(kind="flaky")
    assert job.status == "pending" and job.attempts == 1 and "SMTP down" in (job.last_error or "")
    for _ in range(2):
        container.clock.advance(hours=2)  # type: ignore[attr-defined]
        assert await worker.run_once() == 1
    job = await Job.get(kind="flaky")
    assert job.status == "failed" and job.attempts == 3
    container.clock.advance(days=1)  # type: ignore[attr-defined]
    assert await worker.run_once() == 0
    assert calls == [1, 1, 1]


async def test_job_of_a_dead_worker_is_taken_again_after_its_lease(container: Container) -> None:
    done: list[str] = []

    async def handler(payload: dict[str, Any]) -> None:
        done.append(payload["id"])

    await _enqueue(container, "work", {"id": "a"})
    lease = timedelta(minutes=5)
    claimed = await queue.claim("dead-worker", container.clock.now(), limit=10, lease=lease)
    assert len(claimed) == 1  # …and then that worker crashed without finishing
    other = Worker({"work": handler}, container.clock, lease=lease)
    assert await other.run_once() == 0  # still leased
    container.clock.advance(minutes=5, seconds=1)  # type: ignore[attr-defined]
    assert await other.run_once() == 1
    assert done == ["a"]
    assert (await Job.get(kind="work")).status == "done"
    # the dead worker's late completion cannot overwrite the new owner's result
    await queue.complete(claimed[0].id, "dead-worker", container.clock.now())
    assert (await Job.get(kind="work")).locked_by == other.id


async def test_dedupe_key_makes_enqueue_idempotent(container: Container) -> None:
    async with in_transaction("default") as conn:
        repo = queue.JobRepository(conn)
        await repo.enqueue("k", {}, container.clock.now(), dedupe_key="invitation:s1")
        await repo.enqueue("k", {}, container.clock.now(), dedupe_key="invitation:s1")
    assert await Job.filter(kind="k").count() == 1


async def test_stop_finishes_the_jobs_in_hand_and_leaves_the_rest_to_others(container: Container) -> None:
    import asyncio

    stop = asyncio.Event()
    done: list[int] = []

    async def handler(payload: dict[str, Any]) -> None:
        stop.set()  # SIGTERM arrives while the first jobs run
        await asyncio.sleep(0)
        done.append(payload["n"])

    for n in range(5):
        await _enqueue(container, "batch", {"n": n})
    worker = Worker({"batch": handler}, container.clock, batch=2, concurrency=2)
    assert await worker.run_once(stop) == 2  # both jobs in hand were finished, not abandoned
    assert len(done) == 2
    jobs = await Job.filter(kind="batch").order_by("id")
    assert [j.status for j in jobs].count("done") == 2
    rest = [j for j in jobs if j.status == "pending"]
    assert len(rest) == 3 and all(j.attempts == 0 and j.locked_by is None for j in rest)
    other = Worker({"batch": lambda p: _noop()}, container.clock)
    assert await other.run_once() == 3  # due at once for another worker


async def test_claimed_but_unstarted_job_is_released_with_its_attempt_given_back(container: Container) -> None:
    await _enqueue(container, "batch", {"n": 1})
    (job,) = await queue.claim("w1", container.clock.now(), limit=5, lease=timedelta(minutes=5))
    await queue.release(job, "w1", container.clock.now())
    row = await Job.get(kind="batch")
    assert (row.status, row.attempts, row.locked_by) == ("pending", 0, None)
    assert row.due_at <= container.clock.now()


async def _noop() -> None:
    return None


async def test_a_committed_unit_of_work_with_jobs_wakes_the_worker_without_waiting_for_a_poll(
    container: Container,
) -> None:
    ran = asyncio.Event()

    async def handler(payload: dict[str, Any]) -> None:
        ran.set()

    worker = Worker({"work": handler}, container.clock, poll_seconds=3600)  # a poll would come in an hour
    previous, UnitOfWork.on_jobs_committed = UnitOfWork.on_jobs_committed, worker.wake
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0)  # the worker finds nothing and waits
        async with UnitOfWork() as uow:
            await uow.jobs.enqueue("work", {}, container.clock.now())
        await asyncio.wait_for(ran.wait(), timeout=10)
    finally:
        stop.set()
        await running
        UnitOfWork.on_jobs_committed = previous


async def test_a_dedupe_key_makes_a_second_enqueue_a_no_op_inside_the_same_transaction(container: Container) -> None:
    async with UnitOfWork() as uow:
        for _ in range(2):
            await uow.jobs.enqueue("work", {"n": 1}, container.clock.now(), dedupe_key="work:1")
        await uow.jobs.enqueue("work", {"n": 2}, container.clock.now())  # the transaction is still usable
    assert sorted(j.payload["n"] for j in await Job.filter(kind="work")) == [1, 2]


async def test_a_job_enqueued_while_a_slow_one_runs_starts_without_waiting_for_it(container: Container) -> None:
    release_slow = asyncio.Event()
    slow_started = asyncio.Event()
    quick_ran = asyncio.Event()

    async def slow(payload: dict[str, Any]) -> None:
        slow_started.set()
        await release_slow.wait()

    async def quick(payload: dict[str, Any]) -> None:
        quick_ran.set()

    worker = Worker({"slow": slow, "quick": quick}, container.clock, poll_seconds=3600)
    previous, UnitOfWork.on_jobs_committed = UnitOfWork.on_jobs_committed, worker.wake
    await _enqueue(container, "slow", {})
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(slow_started.wait(), timeout=10)
        async with UnitOfWork() as uow:
            await uow.jobs.enqueue("quick", {}, container.clock.now())
        await asyncio.wait_for(quick_ran.wait(), timeout=10)  # the slow job still holds its slot
        assert not release_slow.is_set()
    finally:
        release_slow.set()
        stop.set()
        await running
        UnitOfWork.on_jobs_committed = previous
    assert sorted(j.status for j in await Job.all()) == ["done", "done"]


async def test_a_wake_up_during_a_claim_that_found_nothing_is_not_lost(
    container: Container, monkeypatch: Any,
) -> None:
    """A job committed while the claim's query runs is not in its result; the wake-up its commit
    sent must bring another claim, not wait for the next poll (an hour here)."""
    ran = asyncio.Event()

    async def handler(payload: dict[str, Any]) -> None:
        ran.set()

    worker = Worker({"work": handler}, container.clock, poll_seconds=3600)
    real_claim = queue.claim
    calls = 0

    async def claim_racing_a_commit(*args: Any, **kwargs: Any) -> list[queue.ClaimedJob]:
        nonlocal calls
        calls += 1
        found = await real_claim(*args, **kwargs)
        if calls == 1:  # the query has run; the job commits and wakes the worker only now
            await _enqueue(container, "work", {})
            worker.wake()
        return found

    monkeypatch.setattr(queue, "claim", claim_racing_a_commit)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(ran.wait(), timeout=10)
    finally:
        stop.set()
        await running
