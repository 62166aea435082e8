"""Retry policy of the client: exponential back-off with full jitter, on UNAVAILABLE only.

UNAVAILABLE means the edge or gateway was not reached or is draining: the request did not run,
so repeating it (with the same request id) is safe. Every other status is final: repeating an
INVALID_ARGUMENT, a DEADLINE_EXCEEDED or a rate limit does not help. All attempts together stay
within the call's deadline. Pure functions and an immutable policy; safe from any thread.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

from predmesh.client.errors import DeadlineExceededError, from_rpc_error

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` calls at most (1 = no retry); before attempt n+1 the client sleeps a random time
    in [0, min(max_backoff_s, initial_backoff_s * multiplier**(n-1))] (full jitter), never past the deadline."""

    max_attempts: int = 4
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("back-off times must be >= 0 and multiplier >= 1")

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Sleep before the attempt after `attempt` (1-based)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)

    def should_retry(self, code: grpc.StatusCode | None, attempt: int) -> bool:
        return code in RETRYABLE and attempt < self.max_attempts


NO_RETRY = RetryPolicy(max_attempts=1)


class Attempts:
    """The attempts of one call under `policy` within `timeout_s` (shared by the sync and asyncio clients):

    attempts = Attempts(policy, timeout_s)
    while True:
        try:
            return call(timeout=attempts.next_timeout())
        except grpc.RpcError as err:
            sleep(attempts.after_failure(err))  # raises the typed error when the failure is final
    """

    def __init__(self, policy: RetryPolicy, timeout_s: float, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._deadline = time.monotonic() + timeout_s
        self._rng = rng
        self.made = 0

    def next_timeout(self) -> float:
        """The next attempt's timeout (what is left of the deadline); DeadlineExceededError when nothing is."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed during retries", self.made)
        self.made += 1
        return remaining

    def after_failure(self, err: grpc.RpcError) -> float:
        """Seconds to wait before the next attempt; raises the typed error when `err` is final."""
        code = err.code() if hasattr(err, "code") else None
        if not self._policy.should_retry(code, self.made):
            raise from_rpc_error(err, self.made) from err
        return min(self._policy.backoff_s(self.made, self._rng), max(0.0, self._deadline - time.monotonic()))
