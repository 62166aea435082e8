"""Circuit breakers: stop calling a failing dependency, probe it for recovery.

States: closed (calls flow; `failure_threshold` consecutive failures open it), open (calls
are refused for `reset_timeout_s`), half-open (one probe call at a time; success closes,
failure re-opens). Used from one event loop; no locking needed.

`BreakerRegistry.call` is the one place that wraps a dependency call: it asks the breaker,
runs the call, validates the answer, records the outcome and reports the breaker's state.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.gateway.errors import DeadlineExceeded, ResourceExhausted, Unavailable

T = TypeVar("T")

# Failures of a dependency (as opposed to caller errors such as NOT_FOUND or INVALID_ARGUMENT).
DEPENDENCY_ERRORS = (Unavailable, DeadlineExceeded, ResourceExhausted)


class CircuitOpen(Unavailable):
    """The dependency's breaker refused the call (no call was made)."""


def expect_count(got: int, want: int, message: str) -> None:
    """A dependency that answers with the wrong number of items has failed (`message`: got, want)."""
    if got != want:
        raise Unavailable(message.format(got, want))


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
    """One breaker per dependency key, created on first use with shared settings.

    `on_state(key, is_open)` is told the state after every decision (a metrics gauge).
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_timeout_s: float,
        on_state: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._threshold = failure_threshold
        self._reset_timeout_s = reset_timeout_s
        self._breakers: dict[str, CircuitBreaker] = {}
        self._reported: dict[str, bool] = {}  # last open/closed state given to on_state, per key
        self.on_state = on_state

    def get(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(key, self._threshold, self._reset_timeout_s)
        return breaker

    async def call(
        self,
        key: str,
        call: Callable[[], Awaitable[T]],
        check: Callable[[T], None] | None = None,
    ) -> T:
        """Run `call` through `key`'s breaker.

        Raises CircuitOpen without calling when the breaker refuses. A DEPENDENCY_ERRORS
        failure, or `check(result)` raising one (a malformed answer), counts as a failure
        and propagates; anything else (caller errors) leaves the breaker as it was.
        """
        breaker = self.get(key)
        if not breaker.allow():
            self._report(key, True)
            raise CircuitOpen(f"{key}: circuit breaker open")
        try:
            result = await call()
            if check is not None:
                check(result)
        except DEPENDENCY_ERRORS:
            breaker.record_failure()
            self._report(key, breaker.state == breaker.OPEN)
            raise
        breaker.record_success()
        self._report(key, False)
        return result

    def _report(self, key: str, is_open: bool) -> None:
        """Tell `on_state` about a change (and the first state of each key), not every call."""
        if self.on_state is not None and self._reported.get(key) is not is_open:
            self._reported[key] = is_open
            self.on_state(key, is_open)

    def states(self) -> dict[str, str]:
        """State of every breaker created so far, by key ("closed", "open", "half_open")."""
        return {key: breaker.state for key, breaker in self._breakers.items()}
