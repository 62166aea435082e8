"""Prediction events as the logger accepts them: the validation both sides run.

`validate_event` is called by `predmesh.clients.logger.LoggerClient.emit` (the caller
side drops a malformed event at once) and by the logger service on every received
batch (the authority). Pure functions, safe from any thread; no gRPC imports.
"""

from __future__ import annotations

from predmesh.common.errors import InvalidArgument
from predmesh.v1.events_pb2 import PredictionEvent


class InvalidEvent(InvalidArgument):
    """An event in a batch is malformed; the whole batch is rejected, nothing of it is journaled."""


# "outcome": not a prediction but what one turned out to be (`outcome` set; topic `outcomes`).
ARMS = frozenset({"stable", "canary", "pinned", "shadow", "fallback", "outcome"})
SHADOW_ARM = "shadow"
OUTCOME_ARM = "outcome"
_MAX_ID_CHARS = 256


def validate_event(event: PredictionEvent, index: int = 0) -> None:
    """Raise InvalidEvent when `event` cannot be logged (the caller rejects the whole batch)."""
    where = f"events[{index}]"
    if not event.request_id:
        raise InvalidEvent(f"{where}: request_id is required")
    if not event.model:
        raise InvalidEvent(f"{where}: model is required")
    if event.arm and event.arm not in ARMS:
        raise InvalidEvent(f"{where}: arm {event.arm!r} is not one of {sorted(ARMS)}")
    for name in ("request_id", "model", "entity_id", "trace_id"):
        if len(getattr(event, name)) > _MAX_ID_CHARS:
            raise InvalidEvent(f"{where}: {name} longer than {_MAX_ID_CHARS} characters")
    if (event.arm == OUTCOME_ARM) != event.HasField("outcome"):
        raise InvalidEvent(f"{where}: an outcome record has arm {OUTCOME_ARM!r} and an outcome, nothing else does")
    if event.latency_ms < 0:
        raise InvalidEvent(f"{where}: latency_ms must not be negative")
