"""``/readyz``: the database answers, and the event loop's lag is reported."""

from __future__ import annotations

import time
from typing import Any

from esign_gateway.http.keys import LOOP_LAG


async def test_readyz_reports_a_blocked_event_loop(api: Any) -> None:
    monitor = api.app[LOOP_LAG]
    for _ in range(2):  # two ordinary samples
        monitor.ticked.clear()
        await monitor.ticked.wait()
    time.sleep(0.3)  # noqa: ASYNC251 - the point: something holds the loop for 300 ms
    monitor.ticked.clear()
    await monitor.ticked.wait()
    resp = await api.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ready"
    lag = body["event_loop_lag"]
    assert lag["max_ms"] >= 250 and lag["samples"] >= 3 and lag["p50_ms"] < lag["max_ms"]


async def test_readyz_reports_the_upload_inspectors(api: Any) -> None:
    body = await (await api.get("/readyz")).json()
    assert body["inspectors"]["workers"] == 2 and body["inspectors"]["alive"] == 2


async def test_readyz_is_503_while_no_upload_inspector_runs(api: Any, container: Any, monkeypatch: Any) -> None:
    from adapters.pdf.inspector import ProcessPdfInspector

    monkeypatch.setattr(container, "inspector", ProcessPdfInspector(workers=1))  # real, none started yet
    resp = await api.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not_ready" and body["inspectors"] == {"workers": 1, "alive": 0, "replaced": 0}
    verdicts = {c["name"]: c["ready"] for c in body["components"]}
    assert verdicts["pdf_inspector"] is False and verdicts["database"] is True


async def test_readyz_is_503_while_any_component_is_not_ready(api: Any, container: Any, monkeypatch: Any) -> None:
    from esign_gateway.ports import ComponentHealth

    async def down() -> ComponentHealth:
        return ComponentHealth("sms", False, "3 sends failed in a row")

    monkeypatch.setattr(container, "health_checks", [*container.health_checks, down])
    resp = await api.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not_ready"
    assert {"name": "sms", "ready": False, "detail": "3 sends failed in a row"} in body["components"]


async def test_a_check_that_raises_is_a_component_not_ready_and_not_a_500(
    api: Any, container: Any, monkeypatch: Any
) -> None:
    async def mail_queue_health() -> Any:
        raise ConnectionRefusedError("the database is down")

    monkeypatch.setattr(container, "health_checks", [*container.health_checks, mail_queue_health])
    resp = await api.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert {"name": "mail_queue", "ready": False, "detail": "the check itself failed (ConnectionRefusedError)"} \
        in body["components"]
