"""Untrusted uploads are checked in bounded worker processes: per document, under load, over time."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.pdf.inspector import ProcessPdfInspector
from esign_gateway.errors import InspectorBusyError, PdfEncryptedError, PdfInvalidError
from tests import pdf_reproducers as repro
from tests.factories import make_encrypted_pdf, make_pdf, make_pdf_bomb


async def test_valid_pdf_reports_pages(shared_parts: dict[str, Any]) -> None:
    assert (await shared_parts["inspector"].inspect(make_pdf(pages=7))).pages == 7


async def test_encrypted_pdf_is_refused(shared_parts: dict[str, Any]) -> None:
    with pytest.raises(PdfEncryptedError):
        await shared_parts["inspector"].inspect(make_encrypted_pdf())


@pytest.mark.parametrize("data", [b"", b"hello", b"%PDF-1.7\n", make_pdf()[:300], b"%PDF-1.4\n" + b"\x00" * 5000],
                         ids=["empty", "text", "header-only", "truncated", "zeros"])
async def test_broken_input_is_pdf_invalid(shared_parts: dict[str, Any], data: bytes) -> None:
    with pytest.raises(PdfInvalidError):
        await shared_parts["inspector"].inspect(data)


async def test_pdf_bomb_fails_in_the_worker_and_the_inspector_keeps_working(shared_parts: dict[str, Any]) -> None:
    inspector = shared_parts["inspector"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PdfInvalidError):
        await inspector.inspect(make_pdf_bomb())
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024  # the gateway's own memory did not absorb the bomb
    assert (await inspector.inspect(make_pdf(pages=2))).pages == 2


# ------------------------------------------------------------------------------ under load and over time


@pytest.fixture
async def small_budget_inspector() -> AsyncIterator[ProcessPdfInspector]:
    """Two inspectors with a 2 s CPU budget per document and a 6 s wall-clock limit."""
    inspector = ProcessPdfInspector(workers=2, cpu_seconds=2, timeout_seconds=6, wait_seconds=30)
    await inspector.start()
    yield inspector
    await inspector.close()


async def test_the_cpu_budget_is_per_document_so_a_long_lived_inspector_refuses_nothing_valid(
    small_budget_inspector: ProcessPdfInspector,
) -> None:
    """The budget used to count over the process's whole life: after it, every valid file was 422."""
    pdf = make_pdf(pages=60)  # 0.1-0.3 s of CPU each, depending on the machine
    budget = small_budget_inspector.cpu_seconds
    start = _cpu(small_budget_inspector.pids)

    def used() -> dict[int, float]:
        return {pid: cpu - start.get(pid, 0.0) for pid, cpu in _cpu(small_budget_inspector.pids).items()}

    inspections = 0
    while min(used().values()) <= budget + 0.5 and inspections < 400:  # until each has outlived a budget
        assert (await small_budget_inspector.inspect(pdf)).pages == 60
        inspections += 1
    assert min(used().values()) > budget + 0.5, used()
    assert small_budget_inspector.replaced == 0


async def test_a_slow_file_is_refused_alone_and_twenty_valid_uploads_beside_it_are_accepted(
    small_budget_inspector: ProcessPdfInspector,
) -> None:
    slow = repro.slow_to_decode(seconds_hint=8)  # needs ~8 s of CPU: over the 2 s budget
    valid = [make_pdf(pages=1 + i % 3, text=f"Smlouva {i}") for i in range(20)]
    results = await asyncio.gather(
        small_budget_inspector.inspect(slow), *(small_budget_inspector.inspect(v) for v in valid),
        return_exceptions=True,
    )
    assert isinstance(results[0], PdfInvalidError) and "processing" in results[0].detail
    assert [r.pages for r in results[1:]] == [1 + i % 3 for i in range(20)]  # type: ignore[union-attr]


async def test_an_inspector_stuck_past_the_wall_clock_is_killed_and_replaced_and_only_its_file_refused() -> None:
    inspector = ProcessPdfInspector(workers=2, cpu_seconds=20, timeout_seconds=1, wait_seconds=30)
    await inspector.start()
    try:
        slow = asyncio.ensure_future(inspector.inspect(repro.slow_to_decode(seconds_hint=8)))
        valid = [await inspector.inspect(make_pdf()) for _ in range(3)]
        with pytest.raises(PdfInvalidError, match="took more than 1 s"):
            await slow
        assert [v.pages for v in valid] == [1, 1, 1]
        assert inspector.replaced == 1
        assert await _eventually(lambda: len(_live(inspector.pids)) == 2)
        assert (await inspector.inspect(make_pdf(pages=2))).pages == 2
    finally:
        await inspector.close()


async def test_an_inspector_that_died_while_idle_costs_no_upload_a_wrong_refusal(
    small_budget_inspector: ProcessPdfInspector,
) -> None:
    victim = small_budget_inspector.pids[0]
    os.kill(victim, signal.SIGKILL)  # the OOM killer, an operator's mistake
    assert await _eventually(lambda: victim not in _live([victim]))
    for _ in range(4):
        assert (await small_budget_inspector.inspect(make_pdf())).pages == 1
    assert small_budget_inspector.replacements == {"died while idle": 1}
    assert await _eventually(lambda: len(_live(small_budget_inspector.pids)) == 2)


async def _eventually(condition: Any, attempts: int = 200) -> bool:
    """Wait for a condition another process brings about (bounded: 200 looks, ~10 s)."""
    for _ in range(attempts):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return bool(condition())


async def test_when_every_inspector_stays_busy_a_request_gets_503_with_retry_after() -> None:
    inspector = ProcessPdfInspector(workers=1, cpu_seconds=20, timeout_seconds=30, wait_seconds=0.5)
    await inspector.start()
    try:
        slow = asyncio.ensure_future(inspector.inspect(repro.slow_to_decode(seconds_hint=3)))
        await asyncio.sleep(0)
        with pytest.raises(InspectorBusyError) as caught:
            await inspector.inspect(make_pdf())
        assert caught.value.status == 503 and int(caught.value.headers["Retry-After"]) >= 1
        assert (await slow).pages == 1  # the slow file itself was judged, not dropped
    finally:
        await inspector.close()


async def test_soak_two_thousand_inspections_in_one_gateway_refuse_no_valid_file(
    small_budget_inspector: ProcessPdfInspector,
) -> None:
    pdf, signed, repaired = repro.tiny_contract(), repro.signed_by_foreign_ca(), repro.leading_junk()
    sem = asyncio.Semaphore(4)

    async def one(i: int) -> int:
        async with sem:
            data = signed if i % 50 == 0 else repaired if i % 50 == 25 else pdf
            return (await small_budget_inspector.inspect(data)).pages

    pages = await asyncio.gather(*(one(i) for i in range(2000)))
    assert pages.count(1) == 2000 - 40 and pages.count(2) == 40
    assert small_budget_inspector.replacements["killed"] == 0


def _live(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are running (a killed process not yet reaped is a zombie: not running)."""
    return [pid for pid in pids if _state(Path("/proc") / str(pid)) not in ("Z", "?")]


def _state(proc: Path) -> str:
    try:
        return (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def _cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each of ``pids``."""
    used = {}
    for pid in pids:
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return used
