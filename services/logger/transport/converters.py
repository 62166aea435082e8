"""Protobuf <-> core conversions for the logger's gRPC surface."""

from __future__ import annotations

from predmesh.clients.events import InvalidEvent, validate_event
from predmesh.v1.events_pb2 import EventBatch, PublishAck


def batch_to_payloads(batch: EventBatch, max_event_bytes: int) -> list[bytes]:
    """Validate every event of `batch` and serialize it; raises InvalidEvent before anything is kept."""
    payloads: list[bytes] = []
    for i, event in enumerate(batch.events):
        validate_event(event, i)
        payload = event.SerializeToString()
        if len(payload) > max_event_bytes:
            raise InvalidEvent(f"events[{i}]: {len(payload)} bytes exceeds the {max_event_bytes}-byte limit")
        payloads.append(payload)
    return payloads


def ack(sequence: int, accepted: int) -> PublishAck:
    return PublishAck(sequence=sequence, accepted=accepted)
