"""Per-model answer statistics of this gateway over a sliding window: the latest and p99 inference
latency and the share of degraded answers (for GetModelHealth).

Each answer is one (time, inference_ms, degraded) sample in a bounded deque per model: the window
is the last `window_s` seconds, at most the latest `max_samples` answers (so memory stays bounded at
any rate; at very high rates the figures cover the latest answers only). Answers that ran no
inference (a constant fallback) count for the degraded ratio, not for latency.

Used from one event loop; `record` is O(1) amortised. No I/O.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StatsSummary:
    last_inference_ms: float = 0.0
    p99_inference_ms: float = 0.0
    requests: int = 0
    degraded: int = 0

    @property
    def degraded_ratio(self) -> float:
        return self.degraded / self.requests if self.requests else 0.0


class ModelStats:
    def __init__(
        self, window_s: float = 60.0, max_samples: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self._max_samples = max_samples
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, float, bool]]] = {}

    def record(self, model: str, inference_ms: float, degraded: bool) -> None:
        samples = self._samples.get(model)
        if samples is None:
            samples = self._samples[model] = deque(maxlen=self._max_samples)
        now = self._clock()
        samples.append((now, inference_ms, degraded))
        self._prune(samples, now)

    def _prune(self, samples: deque[tuple[float, float, bool]], now: float) -> None:
        while samples and samples[0][0] < now - self.window_s:
            samples.popleft()

    def summary(self, model: str) -> StatsSummary:
        samples = self._samples.get(model)
        if not samples:
            return StatsSummary()
        self._prune(samples, self._clock())
        latencies = [ms for _, ms, _ in samples if ms > 0]
        last = next((ms for _, ms, _ in reversed(samples) if ms > 0), 0.0)
        p99 = sorted(latencies)[max(0, math.ceil(0.99 * len(latencies)) - 1)] if latencies else 0.0
        return StatsSummary(last, p99, len(samples), sum(1 for *_, d in samples if d))
