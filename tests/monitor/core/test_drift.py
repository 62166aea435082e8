"""Drift core: reference format, PSI, sliding windows (unit, no I/O besides tmp files)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from services.monitor.core.reference import (
    FORMAT,
    Histogram,
    ReferenceStore,
    compute_reference,
    histogram_of,
    load_reference,
    psi,
    save_reference,
)
from services.monitor.core.windows import DriftMonitor, Observation


def scores(rng: random.Random, n: int, shift: float = 0.0) -> list[float]:
    return [min(1.0, max(0.0, rng.betavariate(2, 5) + shift)) for _ in range(n)]


def test_reference_round_trip_and_format(tmp_path: Path) -> None:
    rng = random.Random(7)
    ref = compute_reference(
        scores(rng, 5000),
        {"amount": [rng.lognormvariate(3, 1) for _ in range(5000)], "channel": ["web"] * 5000},
    )
    path = save_reference(ref, tmp_path)
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT
    assert set(data["features"]) == {"amount"}  # strings are skipped
    assert len(data["score"]["edges"]) == len(data["score"]["fractions"]) + 1 == 11
    assert sum(data["score"]["fractions"]) == pytest.approx(1.0)
    assert load_reference(tmp_path) == ref
    assert load_reference(tmp_path / "nope") is None


def test_psi_small_for_same_distribution_large_for_shift() -> None:
    rng = random.Random(1)
    ref = histogram_of(scores(rng, 10_000))
    same = psi(ref.fractions, ref.counts(scores(rng, 2000)))
    shifted = psi(ref.fractions, ref.counts(scores(rng, 2000, shift=0.15)))
    assert same < 0.05
    assert shifted > 0.25
    assert psi(ref.fractions, [0] * len(ref.fractions)) == 0.0


def test_histogram_edges_are_open_ended_and_validated() -> None:
    h = Histogram((0.0, 1.0, 2.0), (0.5, 0.5))
    assert h.counts([-10.0, 0.5, 1.0, 99.0, float("nan")]) == [2, 2]
    with pytest.raises(ValueError):
        Histogram((0.0, 1.0), (0.5, 0.5))
    with pytest.raises(ValueError):
        Histogram((0.0, 1.0, 2.0), (0.2, 0.2))
    assert histogram_of([3.0, 3.0, 3.0]).fractions == (1.0,)


def test_windows_rates_quantiles_degraded_and_drift(tmp_path: Path) -> None:
    rng = random.Random(3)
    ref = compute_reference(scores(rng, 5000), {"amount": [rng.gauss(100, 20) for _ in range(5000)]})
    for version in ("1", "2"):
        (tmp_path / "fraud" / version).mkdir(parents=True)
        save_reference(ref, tmp_path / "fraud" / version)
    now = [1000.0]
    monitor = DriftMonitor(ReferenceStore(tmp_path), window_s=60, min_events=200, clock=lambda: now[0])
    now[0] = 1100.0
    for i in range(600):
        t = 1100.0 - 30 + i * 0.05
        # v1: same distribution; v2: shifted scores and shifted amount
        monitor.observe(
            Observation("fraud", "1", t, float(i % 100), i % 10 == 0, scores(rng, 1)[0], {"amount": rng.gauss(100, 20)})
        )
        monitor.observe(
            Observation("fraud", "2", t, 5.0, False, scores(rng, 1, 0.2)[0], {"amount": rng.gauss(140, 20)})
        )
    monitor.observe(Observation("other", "1", 100.0, 1.0, False, 0.5))  # already outside the window
    stats = {s.version: s for s in monitor.evaluate()}
    assert set(stats) == {"1", "2"}
    v1, v2 = stats["1"], stats["2"]
    assert v1.events == 600 and v1.request_rate == pytest.approx(10.0)
    assert v1.latency_ms[0.5] == pytest.approx(49, abs=1) and v1.latency_ms[0.99] == pytest.approx(98, abs=1)
    assert v1.degraded_rate == pytest.approx(0.1)
    assert v1.score_psi is not None and v1.score_psi < 0.1
    assert v1.feature_psi["amount"] < 0.1
    assert v2.score_psi is not None and v2.score_psi > 0.25
    assert v2.feature_psi["amount"] > 0.25
    now[0] = 1200.0  # everything slides out
    assert monitor.evaluate() == []


def test_no_reference_or_too_few_events_means_no_psi(tmp_path: Path) -> None:
    monitor = DriftMonitor(ReferenceStore(tmp_path), window_s=60, min_events=10, clock=lambda: 50.0)
    for _ in range(20):
        monitor.observe(Observation("fraud", "9", 49.0, 1.0, False, 0.3))
    (stats,) = monitor.evaluate()
    assert stats.score_psi is None and stats.feature_psi == {}
    assert ReferenceStore(None)("fraud", "1") is None
    assert ReferenceStore(tmp_path)("../etc", "1") is None


def test_one_reference_module() -> None:
    """The reference format and its cached lookup live in one module (there were reference.py and references.py)."""
    import importlib.util

    assert importlib.util.find_spec("services.monitor.core.references") is None
    assert ReferenceStore.__module__ == "services.monitor.core.reference"
