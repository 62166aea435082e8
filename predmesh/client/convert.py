"""Client-side protobuf conversions: requests from Python values, typed results from responses.

Context values go in the typed `context` map (every gateway version reads it); bool, str and
numbers only. Pure functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from predmesh.client.types import (
    BatchItem,
    BatchPrediction,
    Context,
    ModelHealth,
    Prediction,
    PredictionStatus,
    Score,
    Timings,
    VersionHealth,
)
from predmesh.common.values import scalar_to_value
from predmesh.v1 import common_pb2, health_pb2, jobs_pb2, prediction_pb2


def new_request_id() -> str:
    """A request id the client sets when the caller gives none, so every retry of a call carries the same one."""
    return uuid.uuid4().hex


def context_to_pb(context: Context | None) -> dict[str, common_pb2.Value]:
    out: dict[str, common_pb2.Value] = {}
    for name, value in (context or {}).items():
        if not isinstance(value, bool | int | float | str):
            raise TypeError(f"context[{name!r}]: expected a number, string or bool, got {type(value).__name__}")
        out[name] = scalar_to_value(value)
    return out


def predict_request(
    model: str, entity_id: str, context: Context | None, version: str, request_id: str
) -> prediction_pb2.PredictRequest:
    return prediction_pb2.PredictRequest(
        request_id=request_id or new_request_id(),
        model=model,
        version=version,
        entity_id=entity_id,
        context=context_to_pb(context),
    )


def batch_request(
    model: str, items: Iterable[str | BatchItem], version: str, request_id: str
) -> prediction_pb2.PredictBatchRequest:
    pb_items = []
    for item in items:
        entity = item if isinstance(item, BatchItem) else BatchItem(entity_id=item)
        pb_items.append(prediction_pb2.BatchItem(entity_id=entity.entity_id, context=context_to_pb(entity.context)))
    return prediction_pb2.PredictBatchRequest(
        request_id=request_id or new_request_id(), model=model, version=version, items=pb_items
    )


def timings_from_pb(t: common_pb2.Timings) -> Timings:
    return Timings(features_ms=t.features_ms, inference_ms=t.inference_ms, total_ms=t.total_ms)


def prediction_from_pb(r: prediction_pb2.PredictResponse) -> Prediction:
    return Prediction(
        request_id=r.request_id,
        model=r.model,
        model_version=r.model_version,
        prediction=Score(score=r.prediction.score, scores=tuple(r.prediction.scores), label=r.prediction.label),
        degraded=r.degraded,
        degraded_reason=r.degraded_reason,
        defaulted_features=tuple(r.defaulted_features),
        timings=timings_from_pb(r.timings),
        entity_id=r.entity_id,
        arm=r.arm,
        missing_features=tuple(r.missing_features),
        raw=r,
    )


def batch_from_pb(r: prediction_pb2.PredictBatchResponse) -> BatchPrediction:
    return BatchPrediction(
        request_id=r.request_id,
        results=tuple(prediction_from_pb(x) for x in r.results),
        timings=timings_from_pb(r.timings),
        raw=r,
    )


def health_from_pb(r: health_pb2.ModelHealthResponse) -> ModelHealth:
    return ModelHealth(
        model=r.model,
        healthy=r.healthy,
        versions=tuple(
            VersionHealth(v.version, v.weight_percent, tuple(v.roles), v.loaded, v.kind, v.breaker, v.error)
            for v in r.versions
        ),
        feature_store_reachable=r.feature_store_reachable,
        feature_store_error=r.feature_store_error,
        last_inference_ms=r.last_inference_ms,
        p99_inference_ms=r.p99_inference_ms,
        requests_in_window=r.requests_in_window,
        degraded_ratio=r.degraded_ratio,
        window_s=r.window_s,
        breakers={b.dependency: b.state for b in r.breakers},
        fallback=tuple(r.fallback),
        raw=r,
    )


def status_from_pb(r: prediction_pb2.GetPredictionResponse) -> PredictionStatus:
    state = jobs_pb2.PredictionState.Name(r.state).removeprefix("PREDICTION_STATE_")
    return PredictionStatus(
        request_id=r.request_id,
        state=state,
        result=prediction_from_pb(r.response) if r.HasField("response") else None,
        error_code=r.error_code,
        error_message=r.error_message,
        raw=r,
    )
