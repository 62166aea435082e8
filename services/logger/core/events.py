"""Prediction events: validation and Kafka routing (topic, key, headers).

The Kafka value is the protobuf-encoded `predmesh.v1.PredictionEvent` (the log
schema itself), so the core works on the generated message class; it never imports
gRPC. Pure functions, safe from any thread.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from predmesh.v1.events_pb2 import PredictionEvent
from services.logger.errors import InvalidEvent

ARMS = frozenset({"stable", "canary", "pinned", "shadow", "fallback"})
SHADOW_ARM = "shadow"
CONTENT_TYPE = b"application/x-protobuf; messageType=predmesh.v1.PredictionEvent"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
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
    if event.latency_ms < 0:
        raise InvalidEvent(f"{where}: latency_ms must not be negative")


@dataclass(frozen=True, slots=True)
class Route:
    """Where and how one journaled event is produced."""

    topic: str
    key: bytes | None
    headers: list[tuple[str, str | bytes | None]]


def traceparent(trace_id: str, request_id: str) -> str | None:
    """A W3C traceparent for `trace_id`, or None when it is not a valid 32-hex trace id.

    Used when the event carries no `traceparent` of its own (untraced callers): the
    parent-id is then derived from the request id (stable across replays).
    """
    if not _TRACE_ID.match(trace_id) or trace_id == "0" * 32:
        return None
    span = hashlib.blake2b(request_id.encode(), digest_size=8).hexdigest()
    return f"00-{trace_id}-{span}-01"


_TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def _valid_traceparent(value: str) -> bool:
    return bool(value) and _TRACEPARENT.match(value) is not None and value[3:35] != "0" * 32


def route(payload: bytes, topic: str, shadow_topic: str) -> Route:
    """Topic (shadow arm -> `shadow_topic`), key (entity_id) and headers for a serialized event."""
    event = PredictionEvent.FromString(payload)
    headers: list[tuple[str, str | bytes | None]] = [
        ("content-type", CONTENT_TYPE),
        ("request_id", event.request_id.encode()),
        ("model", event.model.encode()),
        ("arm", event.arm.encode()),
    ]
    if event.trace_id:
        headers.append(("trace_id", event.trace_id.encode()))
    parent = event.traceparent if _valid_traceparent(event.traceparent) else None
    if parent is None and event.trace_id:
        parent = traceparent(event.trace_id, event.request_id)
    if parent is not None:
        headers.append(("traceparent", parent.encode()))
    return Route(
        topic=shadow_topic if event.arm == SHADOW_ARM else topic,
        key=event.entity_id.encode() if event.entity_id else None,
        headers=headers,
    )
