"""The summary of bench.replicas_cost: clean windows only, paired ratios per round, quartiles."""

from __future__ import annotations

import dataclasses
import math

import pytest

from bench.replicas_cost import Window, quartiles, summarize


def _window(round_: int, replicas: int, cpu_s: float, ok: int = 100, **errors: int) -> Window:
    return Window(
        round=round_,
        replicas=replicas,
        ok=ok,
        errors=dict(errors),
        cpu_s={"gateway": cpu_s / 2, "features": cpu_s / 2},
        seconds=5.0,
        p50_ms=10.0,
        p99_ms=50.0,
        load1=4.0,
        box_busy=0.5,
        idle_cpu_s=0.1 * replicas,
    )


def test_quartiles() -> None:
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
    assert quartiles([7.0]) == (7.0, 7.0, 7.0)
    assert all(math.isnan(q) for q in quartiles([]))


def test_degraded_windows_are_dropped_with_their_round_pair() -> None:
    windows = [
        _window(0, 1, 1.0),
        _window(0, 2, 1.1),
        _window(1, 2, 1.2),
        _window(1, 1, 3.0, DEGRADED=40),  # overloaded: measures the fallback chain
        _window(2, 1, 1.0),
        _window(2, 2, 0.9),
    ]
    summary = summarize(windows)
    assert (summary.kept, summary.dropped) == ({1: 2, 2: 3}, {1: 1, 2: 0})
    assert summary.ratios == pytest.approx([1.1, 0.9])  # round 1 has no clean pair
    assert summary.total[1][1] == pytest.approx(10_000.0)  # 1.0 s CPU / 100 predictions
    assert summary.per_service[2]["gateway"] == pytest.approx(5_500.0)
    # Marginal: minus the idle CPU (0.1 s per replica set here) over the window.
    assert summary.marginal_ratios[0] == pytest.approx((1.1 - 0.2) / (1.0 - 0.1))


def test_rows_per_batch_median_skips_windows_without_batches_and_dropped_ones() -> None:
    sizes = [(1, 4.0), (1, 6.0), (1, float("nan")), (2, 2.0), (2, 3.0)]
    windows = [
        dataclasses.replace(_window(i, replicas, 1.0), rows_per_batch=size) for i, (replicas, size) in enumerate(sizes)
    ]
    windows.append(dataclasses.replace(_window(9, 2, 1.0, DEGRADED=1), rows_per_batch=50.0))
    summary = summarize(windows)
    assert summary.rows_per_batch == {1: pytest.approx(5.0), 2: pytest.approx(2.5)}
