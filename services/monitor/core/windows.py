"""Sliding windows of prediction events per model version, and the statistics drawn from them.

`DriftMonitor` is the core of the monitor service: `observe()` adds one event's
`Observation`; `evaluate(now)` evicts what fell out of the window and returns one
`WindowStats` per model version: request rate, latency quantiles, degraded rate, score
PSI against the version's reference and PSI per numeric feature (from the sampled
events that carry feature values).

Threading: `observe` and `evaluate` may be called from different threads (the Kafka
consumer thread and the event loop); one lock guards the windows. Memory is bounded by
`max_events` per version (oldest dropped first).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from services.monitor.core.reference import Reference, psi

QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the monitor keeps of one prediction event."""

    model: str
    version: str
    timestamp_s: float
    latency_ms: float
    degraded: bool
    score: float
    features: Mapping[str, float] = field(default_factory=dict)  # numeric features only, when sampled
    arm: str = ""  # stable | canary | pinned | ... (the gateway's routing arm; "" when unknown)


@dataclass(frozen=True, slots=True)
class WindowStats:
    model: str
    version: str
    events: int
    request_rate: float  # events per second over the window
    latency_ms: Mapping[float, float]  # quantile -> milliseconds
    degraded_rate: float  # fraction of events answered degraded
    score_psi: float | None  # None without a reference or with too few events
    feature_psi: Mapping[str, float]  # numeric features with a reference and enough sampled events
    feature_events: int  # events in the window that carried feature values


ReferenceLookup = Callable[[str, str], Reference | None]


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of an already sorted list (NaN when empty)."""
    if not sorted_values:
        return math.nan
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[idx]


class DriftMonitor:
    """Per-(model, version) sliding windows; see the module docstring."""

    def __init__(
        self,
        references: ReferenceLookup,
        window_s: float = 300.0,
        min_events: int = 100,
        max_events: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._references = references
        self._window_s = window_s
        self._min_events = min_events
        self._max_events = max_events
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], collections.deque[Observation]] = {}
        self._started = clock()

    def observe(self, obs: Observation) -> None:
        key = (obs.model, obs.version)
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = collections.deque(maxlen=self._max_events)
            window.append(obs)

    def evaluate(self, now: float | None = None) -> list[WindowStats]:
        now = self._clock() if now is None else now
        cutoff = now - self._window_s
        with self._lock:
            snapshot: dict[tuple[str, str], list[Observation]] = {}
            for key, window in list(self._windows.items()):
                while window and window[0].timestamp_s < cutoff:
                    window.popleft()
                if window:
                    snapshot[key] = [o for o in window if o.timestamp_s >= cutoff]
                else:
                    del self._windows[key]
        # Until the monitor has run a whole window, rates are over the time it has run.
        span_s = max(1.0, min(self._window_s, now - self._started))
        return [self._stats(model, version, obs, span_s) for (model, version), obs in sorted(snapshot.items())]

    def _stats(self, model: str, version: str, obs: list[Observation], span_s: float) -> WindowStats:
        n = len(obs)
        latencies = sorted(o.latency_ms for o in obs)
        reference = self._references(model, version)
        score_psi: float | None = None
        feature_psi: dict[str, float] = {}
        with_features = [o for o in obs if o.features]
        if reference is not None:
            scored = [o.score for o in obs]
            if len(scored) >= self._min_events:
                score_psi = psi(reference.score.fractions, reference.score.counts(scored))
            if len(with_features) >= self._min_events:
                for name, hist in reference.features.items():
                    values = [o.features[name] for o in with_features if name in o.features]
                    if len(values) >= self._min_events:
                        feature_psi[name] = psi(hist.fractions, hist.counts(values))
        return WindowStats(
            model=model,
            version=version,
            events=n,
            request_rate=n / span_s,
            latency_ms={q: quantile(latencies, q) for q in QUANTILES},
            degraded_rate=sum(1 for o in obs if o.degraded) / n if n else 0.0,
            score_psi=score_psi,
            feature_psi=feature_psi,
            feature_events=len(with_features),
        )
