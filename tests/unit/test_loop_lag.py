"""The loop-lag window: percentiles over the last seconds only."""

from __future__ import annotations

from esign_gateway.http.loop_lag import LoopLagMonitor


def test_no_summary_before_two_samples() -> None:
    monitor = LoopLagMonitor(window=10)
    assert monitor.summary() is None
    monitor.record(0.0, 0.001)
    assert monitor.summary() is None


def test_summary_covers_the_window_and_forgets_older_samples() -> None:
    monitor = LoopLagMonitor(window=10)
    monitor.record(0.0, 0.500)  # one blocked moment, long ago
    for i in range(1, 100):
        monitor.record(5 + i * 0.05, 0.002)
    summary = monitor.summary()
    assert summary is not None and summary.max_ms == 500 and summary.samples == 100
    monitor.record(10.5, 0.002)  # the blocked moment is now more than 10 s old
    summary = monitor.summary()
    assert summary is not None
    assert (summary.p50_ms, summary.p99_ms, summary.max_ms, summary.samples) == (2, 2, 2, 100)


def test_a_timer_that_fired_early_counts_as_no_lag() -> None:
    monitor = LoopLagMonitor(window=10)
    monitor.record(1.0, -0.0001)
    monitor.record(1.1, 0.0)
    summary = monitor.summary()
    assert summary is not None and summary.max_ms == 0
