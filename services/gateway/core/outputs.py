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
    missing: Sequence[tuple[str, ...]] | None = None,
    stale: Sequence[tuple[str, ...]] | None = None,
    cached: bool = False,
) -> list[PredictOutput]:
    """One output per item, in order; `degraded_reason` marks a fallback answer. `missing` and
    `stale` (per item) come with answers whose verdicts are known already (the cache's hits,
    `cached=True`); fresh answers get theirs from `degradation.with_features_verdicts`."""
    empty: list[tuple[str, ...]] = [()] * len(items)
    defaults = defaulted if defaulted is not None else empty
    missings = missing if missing is not None else empty
    stales = stale if stale is not None else empty
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
            missing_features=absent,
            stale_features=old,
            entities=item.entities,
            priority=item.priority,
            cached=cached,
        )
        for rid, item, score, names, absent, old in zip(ids, items, scores, defaults, missings, stales, strict=True)
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


@dataclass(frozen=True, slots=True)
class LogEntry:
    """Answers of one request (or one shadow job) and the feature values they were scored on."""

    outputs: Sequence[PredictOutput]
    names: Sequence[str]
    values: Sequence[Sequence[Scalar]]
    trace: TraceIds


class PredictionLog:
    """Turns answers into prediction records for a non-blocking sink (None: logging off).

    `emit_many` hands every record of a coalesced batch to the sink in one `emit_many` call
    (the logger client frames each event once). A full sink drops records and counts them;
    the request is never failed for its log.
    """

    def __init__(self, sink: PredictionSink | None, features_sample: float, metrics: GatewayMetrics) -> None:
        self._sink = sink
        self._sample = features_sample
        self._metrics = metrics

    def emit_many(self, entries: Sequence[LogEntry]) -> None:
        """Log the answers of several requests with one call to the sink."""
        if self._sink is None or not entries:
            return
        now = time.time()
        records = [
            self._record(out, entry.names, row, entry.trace, now)
            for entry in entries
            for out, row in zip(entry.outputs, entry.values, strict=True)
        ]
        if not records:
            return
        dropped = len(records) - self._sink.emit_many(records)
        if dropped > 0:
            self._metrics.log_dropped.inc(dropped)
            log.warning("prediction log buffer full: %d of %d records dropped", dropped, len(records))

    def _record(
        self, out: PredictOutput, names: Sequence[str], row: Sequence[Scalar], trace: TraceIds, now: float
    ) -> PredictionRecord:
        return PredictionRecord(
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
            priority=out.priority,
            cached=out.cached,
        )

    def _with_features(self) -> bool:
        return self._sample > 0 and (self._sample >= 1 or random.random() < self._sample)
