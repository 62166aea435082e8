"""Deadline budgets carried through a request (monotonic clock)."""

from __future__ import annotations

import time

from predmesh.common.errors import DeadlineExceeded


class Deadline:
    """An absolute deadline on `time.monotonic()`.

    Immutable and cheap; safe to share between tasks of one request.
    """

    __slots__ = ("_at",)

    def __init__(self, at: float) -> None:
        self._at = at

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @property
    def at(self) -> float:
        return self._at

    def remaining(self) -> float:
        """Seconds left (may be negative)."""
        return self._at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def budget(self, cap: float | None = None, what: str = "request") -> float:
        """Seconds left, capped at `cap`; raises DeadlineExceeded when none is left."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded(f"deadline exceeded before {what}")
        return min(left, cap) if cap is not None else left
