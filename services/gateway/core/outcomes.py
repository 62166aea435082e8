"""Outcomes: what a prediction turned out to be, reported later by the caller.

`OutcomeRecorder.record(outcome)` validates an `OutcomeRecord` and hands it to an
`OutcomeSink` (the logger client, which produces it to the `outcomes` topic; the
analytics sink joins it to the prediction by request id). Never blocks: a full log
buffer is RESOURCE_EXHAUSTED (retry later), a missing sink UNAVAILABLE. The caller's
API key must be allowed to call the model the outcome belongs to (checked by the servicer).
One event loop; no gRPC imports.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

from services.gateway.errors import InvalidArgument, ResourceExhausted, Unavailable

MAX_ID_CHARS = 256


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    request_id: str
    model: str
    label: str = ""
    value: float | None = None
    event_time_s: float = 0.0  # when it happened (caller's clock); 0 = when received
    received_s: float = 0.0


class OutcomeSink(Protocol):
    def emit_outcome(self, outcome: OutcomeRecord) -> bool:
        """Queue an outcome without blocking; False if it could not be queued."""
        ...


def validate(outcome: OutcomeRecord) -> None:
    """Raise InvalidArgument naming the field that makes `outcome` unusable."""
    if not outcome.request_id:
        raise InvalidArgument("request_id is required")
    if not outcome.model:
        raise InvalidArgument("model is required")
    for name in ("request_id", "model", "label"):
        if len(getattr(outcome, name)) > MAX_ID_CHARS:
            raise InvalidArgument(f"{name} longer than {MAX_ID_CHARS} characters")
    if not outcome.label and outcome.value is None:
        raise InvalidArgument("an outcome needs a label or a value")
    if outcome.value is not None and not math.isfinite(outcome.value):
        raise InvalidArgument("value must be a finite number")
    if outcome.event_time_s < 0:
        raise InvalidArgument("event_time must not be before 1970")


class OutcomeRecorder:
    def __init__(self, sink: OutcomeSink | None) -> None:
        self._sink = sink
        self.recorded = 0

    def record(self, outcome: OutcomeRecord) -> OutcomeRecord:
        """Validate and queue `outcome` (received now; event time defaults to now); returns what was queued."""
        validate(outcome)
        if self._sink is None:
            raise Unavailable("outcomes are not recorded here: no prediction log is configured")
        now = time.time()
        stamped = OutcomeRecord(
            outcome.request_id, outcome.model, outcome.label, outcome.value, outcome.event_time_s or now, now
        )
        if not self._sink.emit_outcome(stamped):
            raise ResourceExhausted("prediction log buffer full; retry the outcome later")
        self.recorded += 1
        return stamped
