"""Prediction events: Kafka routing (topic, key, headers); validation is `predmesh.clients.events`.

The Kafka value is the protobuf-encoded `predmesh.v1.PredictionEvent` (the log
schema itself), so the core works on the generated message class; it never imports
gRPC. Pure functions, safe from any thread.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from predmesh.clients.events import OUTCOME_ARM, SHADOW_ARM
from predmesh.v1.events_pb2 import PredictionEvent

CONTENT_TYPE = b"application/x-protobuf; messageType=predmesh.v1.PredictionEvent"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


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
    if not _TRACE_ID.fullmatch(trace_id) or trace_id == "0" * 32:
        return None
    span = hashlib.blake2b(request_id.encode(), digest_size=8).hexdigest()
    return f"00-{trace_id}-{span}-01"


_TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def _valid_traceparent(value: str) -> bool:
    return bool(value) and _TRACEPARENT.fullmatch(value) is not None and value[3:35] != "0" * 32


def route(payload: bytes, topic: str, shadow_topic: str, outcome_topic: str = "outcomes") -> Route:
    """Topic (shadow arm -> `shadow_topic`, outcome arm -> `outcome_topic`), key (entity_id, or the
    request id for outcomes) and headers for a serialized event."""
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
    if event.arm == OUTCOME_ARM:
        return Route(topic=outcome_topic, key=event.request_id.encode(), headers=headers)
    return Route(
        topic=shadow_topic if event.arm == SHADOW_ARM else topic,
        key=event.entity_id.encode() if event.entity_id else None,
        headers=headers,
    )
