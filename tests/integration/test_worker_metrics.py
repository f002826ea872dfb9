"""A real ``esign-gateway worker`` process serves its own ``/metrics`` on ESIGN_WORKER_METRICS_PORT:
the jobs it ran, the job table it shares, its event-loop lag."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from esign_gateway.bootstrap import close_db, init_db
from esign_gateway.config import Settings
from esign_gateway.db.models import Job

ROOT = Path(__file__).resolve().parents[2]


def _env(data_dir: Path, port: int) -> dict[str, str]:
    env = {**os.environ, "ESIGN_ENV": "test", "ESIGN_DATA_DIR": str(data_dir), "ESIGN_LOG_JSON": "false",
           "ESIGN_WORKER_METRICS_PORT": str(port), "ESIGN_WORKER_POLL_SECONDS": "0.2"}
    env.pop("ESIGN_DATABASE_URL", None)
    return env


async def _samples(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with session.get(url) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_a_worker_process_serves_its_own_metrics(tmp_path: Path, unused_tcp_port: int) -> None:
    data_dir = tmp_path / "data"
    env = _env(data_dir, unused_tcp_port)
    migrate = await asyncio.create_subprocess_exec(sys.executable, "-m", "esign_gateway", "migrate", env=env, cwd=ROOT,
                                                   stdout=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(migrate.wait(), timeout=120) == 0
    settings = Settings(env="test", data_dir=data_dir)
    await init_db(settings)
    now = datetime.now(UTC)  # the worker runs on the real clock
    await Job.create(kind="expire_envelope", payload={"envelope_id": "no-such-envelope"},
                     due_at=now - timedelta(minutes=1), created_at=now)
    await Job.create(kind="audit_report", payload={}, status="failed", due_at=now - timedelta(days=1), created_at=now)
    await close_db()

    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "esign_gateway", "worker", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []
    try:
        assert worker.stdout is not None
        url = None
        while url is None:  # the process says where it serves its metrics
            line = (await asyncio.wait_for(worker.stdout.readline(), timeout=120)).decode()
            assert line, f"worker exited with {await worker.wait()}: {''.join(output)}"
            output.append(line)
            if "worker metrics on " in line:
                url = line.split("worker metrics on ", 1)[1].strip()
        assert url == f"http://127.0.0.1:{unused_tcp_port}/metrics"

        async with aiohttp.ClientSession() as session:
            async def ran() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
                while True:  # until the worker has run the due job and its loop monitor ticked
                    samples = await _samples(session, url)
                    done = samples.get(("esign_jobs_run_total", frozenset({("kind", "expire_envelope"),
                                                                            ("outcome", "ok")})), 0)
                    if done and samples.get(("esign_event_loop_lag_seconds_count", frozenset()), 0):
                        return samples
                    await asyncio.sleep(0.1)

            samples = await asyncio.wait_for(ran(), timeout=60)
            again = await _samples(session, url)

        assert samples[("esign_jobs_run_total", frozenset({("kind", "expire_envelope"), ("outcome", "ok")}))] == 1
        assert again[("esign_jobs_due", frozenset({("kind", "expire_envelope")}))] == 0
        assert again[("esign_jobs_failed", frozenset({("kind", "audit_report")}))] == 1
        assert again[("esign_jobs_query_ok", frozenset())] == 1
        scrapes = ("esign_http_requests_total",
                   frozenset({("method", "GET"), ("route", "/metrics"), ("status", "200")}))
        assert again[scrapes] >= 1  # the worker's metrics app counts its answers (this one after it is sent)
        assert again[("process_resident_memory_bytes", frozenset())] > 0
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(worker.wait(), timeout=60)
    assert code == 0
