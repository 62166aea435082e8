"""Answers and their log records: the one place that builds `PredictOutput`s and `PredictionRecord`s."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from predmesh.common import telemetry
from services.gateway.core.hashing import features_hash
from services.gateway.core.ports import PredictionSink
from services.gateway.core.types import Arm, PredictInput, PredictionRecord, PredictOutput, Scalar, Score, Timings
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


def build_outputs(
    ids: Sequence[str],
    items: Sequence[PredictInput],
    model: str,
    version: str,
    scores: Sequence[Score],
    arm: Arm,
    timings: Timings,
    defaulted: Sequence[tuple[str, ...]] | None = None,
    degraded_reason: str = "",
) -> list[PredictOutput]:
    """One output per item, in order; `degraded_reason` marks a fallback answer."""
    defaults = defaulted if defaulted is not None else [()] * len(items)
    return [
        PredictOutput(
            request_id=rid,
            model=model,
            model_version=version,
            entity_id=item.entity_id,
            score=score,
            arm=arm,
            timings=timings,
            defaulted_features=names,
            degraded=bool(degraded_reason),
            degraded_reason=degraded_reason,
            entities=item.entities,
        )
        for rid, item, score, names in zip(ids, items, scores, defaults, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class TraceIds:
    """The trace a log record belongs to, captured on the request's own task."""

    trace_id: str = ""
    traceparent: str = ""

    @classmethod
    def current(cls) -> TraceIds:
        if not telemetry.tracing_enabled():
            return NO_TRACE
        return cls(telemetry.current_trace_id(), telemetry.current_traceparent())


NO_TRACE = TraceIds()


class PredictionLog:
    """Turns answers into prediction records for a non-blocking sink (None: logging off).

    A full sink drops the record and counts it; the request is never failed for its log.
    """

    def __init__(self, sink: PredictionSink | None, features_sample: float, metrics: GatewayMetrics) -> None:
        self._sink = sink
        self._sample = features_sample
        self._metrics = metrics

    def emit(
        self,
        outputs: Sequence[PredictOutput],
        names: Sequence[str],
        values: Sequence[Sequence[Scalar]],
        trace: TraceIds,
    ) -> None:
        """Log each output with the feature values it was scored on (`names` order)."""
        if self._sink is None:
            return
        now = time.time()
        for out, row in zip(outputs, values, strict=True):
            record = PredictionRecord(
                request_id=out.request_id,
                model=out.model,
                model_version=out.model_version,
                arm=out.arm,
                entity_id=out.entity_id,
                features_hash=features_hash(names, row),
                score=out.score,
                latency_ms=out.timings.total_ms,
                degraded=out.degraded,
                degraded_reason=out.degraded_reason,
                timestamp_s=now,
                defaulted_features=out.defaulted_features,
                trace_id=trace.trace_id,
                traceparent=trace.traceparent,
                features=tuple(zip(names, row, strict=True)) if names and self._with_features() else (),
                stale_features=out.stale_features,
                entities=out.entities,
            )
            if not self._sink.emit(record):
                self._metrics.log_dropped.inc()
                log.warning("prediction log buffer full: record for %s dropped", out.request_id)

    def _with_features(self) -> bool:
        return self._sample > 0 and (self._sample >= 1 or random.random() < self._sample)
