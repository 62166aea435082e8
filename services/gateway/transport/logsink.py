"""PredictionSink over the logger service: converts records to PredictionEvent and emits them."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from predmesh.clients.logger import LoggerClient
from predmesh.common.values import scalar_to_value
from predmesh.v1 import events_pb2, outcomes_pb2
from services.gateway.core.outcomes import OutcomeRecord
from services.gateway.core.types import PredictionRecord
from services.gateway.transport.converters import score_to_pb


def record_to_event(record: PredictionRecord) -> events_pb2.PredictionEvent:
    ts = Timestamp()
    ts.FromNanoseconds(int(record.timestamp_s * 1e9))
    return events_pb2.PredictionEvent(
        request_id=record.request_id,
        model=record.model,
        model_version=record.model_version,
        arm=record.arm,
        entity_id=record.entity_id,
        features_hash=record.features_hash,
        prediction=score_to_pb(record.score),
        latency_ms=record.latency_ms,
        degraded=record.degraded,
        degraded_reason=record.degraded_reason,
        trace_id=record.trace_id,
        timestamp=ts,
        defaulted_features=list(record.defaulted_features),
        traceparent=record.traceparent,
        features={name: scalar_to_value(value) for name, value in record.features},
        stale_features=list(record.stale_features),
        entities=dict(record.entities),
        priority=record.priority,  # type: ignore[arg-type]
        cached=record.cached,
    )


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def outcome_to_event(outcome: OutcomeRecord) -> events_pb2.PredictionEvent:
    """An outcome as the log carries it: arm "outcome", the outcome in field 20 (topic `outcomes`)."""
    return events_pb2.PredictionEvent(
        request_id=outcome.request_id,
        model=outcome.model,
        arm="outcome",
        timestamp=_timestamp(outcome.received_s),
        outcome=outcomes_pb2.Outcome(
            label=outcome.label, value=outcome.value, event_time=_timestamp(outcome.event_time_s)
        ),
    )


class LoggerSink:
    """Non-blocking: `emit` / `emit_many` convert and hand the events to the LoggerClient's
    bounded buffer, which serializes each one once into its wire form."""

    def __init__(self, client: LoggerClient) -> None:
        self._client = client

    def emit(self, record: PredictionRecord) -> bool:
        return self._client.emit(record_to_event(record))

    def emit_many(self, records: Iterable[PredictionRecord]) -> int:
        """Emit a batch of records (a coalesced batch's); returns how many were accepted."""
        return self._client.emit_many(record_to_event(record) for record in records)

    def emit_outcome(self, outcome: OutcomeRecord) -> bool:
        """Queue an outcome record for the `outcomes` topic (OutcomeSink)."""
        return self._client.emit(outcome_to_event(outcome))
