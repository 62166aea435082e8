"""Adaptive pace of background work (batch job chunks, async requests) against real-time latency.

The gateway runs batch-job chunks and durable async requests in its own event loop, next to
real-time calls. Large background calls are cheap per row but hold the event loop (and the
features and inference processes) long enough to delay every real-time request that arrives
meanwhile; small calls with pauses protect real-time latency but cost throughput. `Pace` finds
the largest background pace that leaves real-time latency where it is without the background
work, by AIMD on two knobs: rows per background call (`items`) and a pause before each call.

Signal: every real-time request's latency on this replica (LaneAdmission times it from admission
to release), marked *contended* when a background call was in flight at any moment of it.
- baseline = the `quantile` of the last `baseline_samples` uncontended latencies (at least
  `floor_s`): what real-time costs now, on this box, without the background work;
- a window of `window` real-time latencies is *bad* when its `quantile` exceeds `tolerance` x
  baseline; a request answered by the fallback chain or failed with a load error counts as slow
  (fallback answers are fast: by latency alone they would look fine). A window is judged as soon
  as its verdict is certain: more than (1 - quantile) x window samples above the threshold = bad
  at once (fast back-off); a full window otherwise.
- bad: items x `decrease`, or less in proportion when the slow requests are far above the
  threshold (x threshold / their median, at least x 1/8), not below `min_items`; at `min_items`
  the pause doubles (from `pause_step_s` up to `max_pause_s`). Good: the pause halves (0 below
  `pause_step_s`), then items + `increase_items` (up to `max_items`).
- A call never carries more rows than last about `max_call_s` at the measured wall time per row
  (`call_done`; `idle_max_call_s` while no real-time traffic is seen): a real-time request
  arriving behind a background call (at a hop that serves both in order) waits at most about
  that long, on a quiet box or a busy one.
- No real-time request for `idle_s`: no pause, and the rows double on every call up to
  `max_items` (nothing to protect: slow start, as TCP's). The first
  real-time request admitted after such a gap brings the rows back to `start_items` at most
  (traffic resumed: probe again from a safe size, as TCP restarts slow start after idle).
- `overloaded`: the pace is at its floor (min items, longest pause) and real-time latency is
  still too high: new batch/async requests from clients are then refused (ResourceExhausted with
  a retry hint) while the gateway's own background work keeps crawling at the floor.

Pure logic: no clock of its own (callers pass monotonic seconds), no I/O. One event loop;
not thread-safe.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class PaceLimits:
    min_items: int = 8
    max_items: int = 1024
    start_items: int = 64
    increase_items: int = 16  # rows added per good window
    decrease: float = 0.5  # items multiplied by this per bad window
    tolerance: float = 1.15  # real-time latency may rise to this multiple of its baseline
    quantile: float = 0.9  # of the window and of the baseline
    window: int = 64  # real-time requests per verdict
    baseline_samples: int = 256  # uncontended latencies the baseline is taken from
    floor_s: float = 0.001  # baseline at least this (sub-millisecond jitter is not a regression)
    pause_step_s: float = 0.005
    max_pause_s: float = 1.0
    idle_s: float = 1.0  # no real-time request for this long: background work speeds up freely
    max_call_s: float = 0.05  # a background call may take about this long at most (rows capped by its per-row time)
    idle_max_call_s: float = 0.2  # the same while no real-time traffic is seen (bounds the wait when it resumes)


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of a non-empty list."""
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))
    return ordered[rank]


class Pace:
    """AIMD pace of background calls (see the module docstring)."""

    def __init__(self, limits: PaceLimits | None = None) -> None:
        self.limits = lim = limits or PaceLimits()
        self.items = max(lim.min_items, min(lim.start_items, lim.max_items))
        self.pause_s = 0.0
        self.overloaded = False
        self.decisions = {"good": 0, "bad": 0, "idle": 0}
        self.on_decision: Callable[[str], None] = lambda kind: None  # metrics
        self._clean: deque[float] = deque(maxlen=max(1, lim.baseline_samples))
        self._window: list[float] = []
        self._above: list[float] = []  # samples of the current window above the threshold
        self._last_realtime_s: float | None = None
        self._per_row_s = 0.0  # smoothed wall time per row of background calls (0 = none measured yet)

    # -- signal -------------------------------------------------------------------
    def baseline_s(self) -> float:
        if not self._clean:
            return self.limits.floor_s
        return max(self.limits.floor_s, quantile(list(self._clean), self.limits.quantile))

    def threshold_s(self) -> float:
        return self.limits.tolerance * self.baseline_s()

    def realtime_arrived(self, now_s: float) -> None:
        """A real-time request was admitted: after a gap of `idle_s`, traffic resumed, so the next
        background call is already small (not only once the first request finished behind a large one)."""
        self._resume(now_s)

    def _resume(self, now_s: float) -> None:
        lim = self.limits
        last, self._last_realtime_s = self._last_realtime_s, now_s
        if last is not None and now_s - last >= lim.idle_s:  # traffic resumed after a gap
            self.items = min(self.items, max(lim.min_items, lim.start_items))
            self.pause_s = 0.0

    def observe_realtime(self, latency_s: float, contended: bool, now_s: float, failed: bool = False) -> None:
        """One finished real-time request: its latency, whether background work overlapped it, and whether
        it `failed` for a load reason (answered by the fallback chain, timed out): a fast fallback answer
        is a miss, so it counts as a slow request (4 x the threshold at least), never as the baseline."""
        lim = self.limits
        if failed:
            latency_s = max(latency_s, 4 * self.threshold_s())
            contended = True
        self._resume(now_s)
        if not contended:
            self._clean.append(latency_s)
        self._window.append(latency_s)
        if latency_s > self.threshold_s():
            self._above.append(latency_s)
        allowed_above = lim.window - math.ceil(lim.quantile * lim.window - 1e-9)  # a good window's slow ones
        if len(self._above) > allowed_above:
            self._decide(good=False)
        elif len(self._window) >= lim.window:
            self._decide(good=quantile(self._window, lim.quantile) <= self.threshold_s())

    # -- what background callers ask ----------------------------------------------
    def call_done(self, rows: int, seconds: float) -> None:
        """A background call of `rows` rows took `seconds` (wall time, contention included)."""
        if rows <= 0 or seconds <= 0:
            return
        per_row = seconds / rows
        self._per_row_s = per_row if self._per_row_s <= 0 else 0.7 * self._per_row_s + 0.3 * per_row

    def call_cap(self, idle: bool = False) -> int:
        """Most rows a call may carry to last about `max_call_s` (`idle_max_call_s` while no real-time
        traffic is seen; `max_items` before any measure)."""
        lim = self.limits
        if self._per_row_s <= 0:
            return lim.max_items
        budget_s = lim.idle_max_call_s if idle else lim.max_call_s
        return max(lim.min_items, min(lim.max_items, int(budget_s / self._per_row_s)))

    def next_call(self, now_s: float) -> tuple[int, float]:
        """(rows for the next background call, seconds to pause before it)."""
        last = self._last_realtime_s
        idle = last is None or now_s - last >= self.limits.idle_s
        if idle:  # nothing to protect: slow start
            self._window.clear()
            self._above.clear()
            self._count("idle")
            self.overloaded = False
            self.pause_s = 0.0
            self.items = min(self.limits.max_items, self.items * 2)
        self.items = min(self.items, self.call_cap(idle))
        return self.items, self.pause_s

    # -- AIMD ---------------------------------------------------------------------
    def _decide(self, good: bool) -> None:
        slow = quantile(self._above, 0.5) if self._above else 0.0
        self._window.clear()
        self._above.clear()
        self._count("good" if good else "bad")
        if good:
            self._increase()
        else:
            self._decrease(self.threshold_s() / slow if slow > 0 else 1.0)

    def _count(self, kind: str) -> None:
        self.decisions[kind] += 1
        self.on_decision(kind)

    def _increase(self) -> None:
        lim = self.limits
        self.overloaded = False
        if self.pause_s > 0:
            self.pause_s = self.pause_s / 2 if self.pause_s / 2 >= lim.pause_step_s else 0.0
        else:
            self.items = min(lim.max_items, self.items + lim.increase_items)

    def _decrease(self, severity: float) -> None:
        """`severity`: threshold / the slow requests' median latency (< 1: how far above they were)."""
        lim = self.limits
        if self.items > lim.min_items:
            factor = max(0.125, min(lim.decrease, severity))
            self.items = max(lim.min_items, int(self.items * factor))
            return
        at_floor = self.pause_s >= lim.max_pause_s
        self.pause_s = min(lim.max_pause_s, max(lim.pause_step_s, self.pause_s * 2))
        self.overloaded = at_floor
