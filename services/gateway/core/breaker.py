"""Circuit breakers: stop calling a failing dependency, probe it for recovery.

States: closed (calls flow; `failure_threshold` consecutive failures open it), open (calls
are refused for `reset_timeout_s`), half-open (one probe call at a time; success closes,
failure re-opens). Used from one event loop; no locking needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = max(1, failure_threshold)
        self._reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe_started = 0.0
        self.state = self.CLOSED
        self.opened_count = 0

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one probe is let through."""
        if self.state == self.CLOSED:
            return True
        if self.state == self.OPEN:
            if self._clock() - self._opened_at < self._reset_timeout_s:
                return False
            self.state = self.HALF_OPEN
            self._probe_in_flight = False
        now = self._clock()
        # A probe whose caller never reported back (cancelled) must not wedge the breaker.
        if self._probe_in_flight and now - self._probe_started < self._reset_timeout_s:
            return False
        self._probe_in_flight = True
        self._probe_started = now
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._probe_in_flight = False
        self.state = self.CLOSED

    def record_failure(self) -> None:
        self._probe_in_flight = False
        if self.state == self.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._failures >= self._threshold and self.state == self.CLOSED:
            self._open()

    def _open(self) -> None:
        self.state = self.OPEN
        self._opened_at = self._clock()
        self.opened_count += 1


class BreakerRegistry:
    """One breaker per dependency key, created on first use with shared settings."""

    def __init__(self, failure_threshold: int, reset_timeout_s: float) -> None:
        self._threshold = failure_threshold
        self._reset_timeout_s = reset_timeout_s
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(key, self._threshold, self._reset_timeout_s)
        return breaker

    def states(self) -> dict[str, str]:
        return {key: b.state for key, b in self._breakers.items()}
