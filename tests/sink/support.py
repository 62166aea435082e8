"""Prediction and outcome events for the sink tests."""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp

from predmesh.v1 import common_pb2, events_pb2, outcomes_pb2


def ts(seconds: float | None = None) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(int((time.time() if seconds is None else seconds) * 1e9))
    return out


def prediction(
    request_id: str,
    model: str,
    version: str,
    arm: str,
    score: float,
    latency_ms: float = 2.0,
    degraded: bool = False,
    at_s: float | None = None,
    label: str = "",
) -> events_pb2.PredictionEvent:
    return events_pb2.PredictionEvent(
        request_id=request_id,
        model=model,
        model_version=version,
        arm=arm,
        entity_id=f"u{request_id}",
        prediction=common_pb2.Prediction(score=score, label=label),
        latency_ms=latency_ms,
        degraded=degraded,
        timestamp=ts(at_s),
    )


def outcome(request_id: str, model: str, value: float, label: str = "") -> events_pb2.PredictionEvent:
    return events_pb2.PredictionEvent(
        request_id=request_id,
        model=model,
        arm="outcome",
        timestamp=ts(),
        outcome=outcomes_pb2.Outcome(label=label, value=value, event_time=ts()),
    )
