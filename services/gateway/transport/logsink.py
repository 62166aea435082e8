"""PredictionSink over the logger service: converts records to PredictionEvent and emits them."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from predmesh.clients.logger import LoggerClient
from predmesh.common.values import scalar_to_value
from predmesh.v1 import common_pb2, events_pb2, outcomes_pb2
from services.gateway.core.outcomes import OutcomeRecord
from services.gateway.core.types import PredictionRecord


def record_to_event(record: PredictionRecord) -> events_pb2.PredictionEvent:
    """The record's event. Fields that are empty in most records are set only when present (the
    same message as passing them all to the constructor, built with less work per record)."""
    seconds, nanos = divmod(int(record.timestamp_s * 1e9), 1_000_000_000)
    score = record.score
    event = events_pb2.PredictionEvent(
        request_id=record.request_id,
        model=record.model,
        model_version=record.model_version,
        arm=record.arm,
        entity_id=record.entity_id,
        features_hash=record.features_hash,
        prediction=common_pb2.Prediction(score=score.score, scores=score.scores, label=score.label),
        latency_ms=record.latency_ms,
        timestamp=Timestamp(seconds=seconds, nanos=nanos),
        priority=record.priority,  # type: ignore[arg-type]
    )
    if record.degraded:
        event.degraded = True
        event.degraded_reason = record.degraded_reason
    elif record.degraded_reason:
        event.degraded_reason = record.degraded_reason
    if record.trace_id:
        event.trace_id = record.trace_id
    if record.traceparent:
        event.traceparent = record.traceparent
    if record.defaulted_features:
        event.defaulted_features.extend(record.defaulted_features)
    if record.stale_features:
        event.stale_features.extend(record.stale_features)
    if record.features:
        features = event.features
        for name, value in record.features:
            features[name].CopyFrom(scalar_to_value(value))
    if record.entities:
        event.entities.update(record.entities)
    if record.cached:
        event.cached = True
    return event


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
