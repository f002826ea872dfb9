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
