"""Kafka record <-> domain conversions of the ingestion service (no logic beyond mapping)."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from predmesh.common.values import scalar_from_value
from predmesh.v1 import ingest_pb2
from services.ingest.core.gates import IncomingEvent, Rejected

REASON_HEADER = "predmesh-reject-reason"
DETAIL_HEADER = "predmesh-reject-detail"


def event_from_record(value: bytes | None) -> IncomingEvent | Rejected:
    """Decode a `FeatureEvent` record; an undecodable one is `Rejected("undecodable")`."""
    try:
        message = ingest_pb2.FeatureEvent.FromString(value or b"")
    except DecodeError as err:
        return Rejected("undecodable", f"not a FeatureEvent: {err}")
    return IncomingEvent(
        entity_type=message.entity_type,
        entity_id=message.entity_id,
        event_time_ms=message.event_time.ToMilliseconds() if message.HasField("event_time") else None,
        values={name: scalar_from_value(value) for name, value in message.values.items()},
    )


def dead_letter_headers(
    rejected: Rejected, topic: str, partition: int, offset: int
) -> list[tuple[str, str | bytes | None]]:
    """Headers of a dead-letter record: the reason, a detail, and where the record came from."""
    return [
        (REASON_HEADER, rejected.reason.encode()),
        (DETAIL_HEADER, rejected.detail[:1000].encode()),
        ("predmesh-source", f"{topic}/{partition}/{offset}".encode()),
    ]
