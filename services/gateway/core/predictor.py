"""The request path: validate, route, fetch features, infer, answer, log, shadow.

`Predictor` is created once by the app and shared by all requests on one event loop.
It never blocks: upstream calls are awaited with the request's remaining budget, the
prediction log is handed to a non-blocking sink, and shadow scoring runs in background
tasks the predictor owns (bounded; drained by `drain()`).

Failure handling: a dependency failure (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED
from features or inference, an open circuit breaker, or too little deadline budget left for
inference) is answered from the model's fallback chain with `degraded=True` and a reason.
Without a fallback chain the error reaches the caller. Caller errors (INVALID_ARGUMENT,
NOT_FOUND) are never masked by fallbacks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from predmesh.common import telemetry
from predmesh.common.deadline import Deadline
from services.gateway.core.breaker import BreakerRegistry
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.hashing import features_hash
from services.gateway.core.ports import FeatureSource, ModelRunner, PredictionSink
from services.gateway.core.routing import EMPTY, FallbackStep, ModelRoute, RoutingTable
from services.gateway.core.types import (
    FeatureRow,
    ModelDescriptor,
    PredictInput,
    PredictionRecord,
    PredictOutput,
    Scalar,
    Score,
    Timings,
)
from services.gateway.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PredmeshError,
    ResourceExhausted,
    Unavailable,
)
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_MAX_ID = 256
_MAX_CONTEXT = 256

DEPENDENCY_ERRORS = (Unavailable, DeadlineExceeded, ResourceExhausted)
FEATURES = "features"


@dataclass(frozen=True, slots=True)
class PredictorLimits:
    features_timeout_s: float
    inference_timeout_s: float
    max_batch_items: int
    # Large PredictBatch calls get proportionally more time (the request deadline still bounds it).
    features_timeout_per_item_s: float = 0.0
    inference_timeout_per_item_s: float = 0.0
    min_inference_budget_s: float = 0.005
    max_shadow_inflight: int = 256
    # Fraction of prediction records that carry their feature values (drift monitoring).
    log_features_sample: float = 0.0

    def features_timeout(self, items: int) -> float:
        """Upper bound on one feature fetch for `items` entities (seconds)."""
        return self.features_timeout_s + self.features_timeout_per_item_s * max(0, items - 1)

    def inference_timeout(self, rows: int) -> float:
        """Upper bound on one inference call for `rows` rows (seconds)."""
        return self.inference_timeout_s + self.inference_timeout_per_item_s * max(0, rows - 1)


class _Degrade(Exception):
    """Internal: the primary path failed for a dependency reason; try the fallback chain."""

    def __init__(self, reason: str, cause: PredmeshError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


def _check_name(kind: str, value: str, required: bool = True) -> None:
    if not value:
        if required:
            raise InvalidArgument(f"{kind} is required")
        return
    if not _NAME.match(value):
        raise InvalidArgument(f"{kind} {value[:64]!r} is not a valid name")


def _check_input(item: PredictInput) -> None:
    _check_name("model", item.model)
    _check_name("version", item.version, required=False)
    if not item.entity_id:
        raise InvalidArgument("entity_id is required")
    if len(item.entity_id) > _MAX_ID:
        raise InvalidArgument(f"entity_id longer than {_MAX_ID} characters")
    if len(item.request_id) > _MAX_ID:
        raise InvalidArgument(f"request_id longer than {_MAX_ID} characters")
    if len(item.context) > _MAX_CONTEXT:
        raise InvalidArgument(f"more than {_MAX_CONTEXT} context features")


class Predictor:
    def __init__(
        self,
        features: FeatureSource,
        models: ModelRunner,
        catalog: ModelCatalog,
        sink: PredictionSink | None,
        limits: PredictorLimits,
        routing: RoutingTable = EMPTY,
        breakers: BreakerRegistry | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._features = features
        self._models = models
        self._catalog = catalog
        self._sink = sink
        self._limits = limits
        self._routing = routing
        self._breakers = breakers or BreakerRegistry(failure_threshold=5, reset_timeout_s=2.0)
        self.metrics = metrics or GatewayMetrics()
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    # -- configuration -----------------------------------------------------
    @property
    def routing(self) -> RoutingTable:
        return self._routing

    def set_routing(self, table: RoutingTable) -> None:
        """Swap the routing table; requests already routed keep their choice."""
        self._routing = table

    # -- public API ----------------------------------------------------------
    async def predict(self, item: PredictInput, deadline: Deadline) -> PredictOutput:
        _check_input(item)
        started = time.monotonic()
        outs = await self._run(item.request_id, item.model, item.version, [item], deadline)
        self.metrics.latency.labels(item.model, "Predict").observe(time.monotonic() - started)
        return outs[0]

    async def predict_batch(
        self, request_id: str, model: str, version: str, items: Sequence[PredictInput], deadline: Deadline
    ) -> list[PredictOutput]:
        if not items:
            raise InvalidArgument("items must not be empty")
        if len(items) > self._limits.max_batch_items:
            raise InvalidArgument(f"at most {self._limits.max_batch_items} items per batch, got {len(items)}")
        for item in items:
            _check_input(item)
        started = time.monotonic()
        outs = await self._run(request_id, model, version, items, deadline)
        self.metrics.latency.labels(model, "PredictBatch").observe(time.monotonic() - started)
        return outs

    async def drain(self, timeout_s: float) -> None:
        """Wait for shadow work up to `timeout_s`, then cancel the rest."""
        if not self._shadow_tasks:
            return
        _, pending = await asyncio.wait(set(self._shadow_tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # -- request path --------------------------------------------------------
    async def _run(
        self, request_id: str, model: str, version: str, items: Sequence[PredictInput], deadline: Deadline
    ) -> list[PredictOutput]:
        started = time.monotonic()
        request_id = request_id or uuid.uuid4().hex
        route = self._routing.get(model)
        groups: dict[tuple[str, str], list[int]] = {}
        for idx, item in enumerate(items):
            key = (version, "pinned") if version else route.assign(item.entity_id)
            groups.setdefault(key, []).append(idx)

        jobs = [
            self._score_group(
                request_id, route, ver, arm, [items[i] for i in idxs], len(items) > 1, idxs, deadline, started
            )
            for (ver, arm), idxs in groups.items()
        ]
        results = await asyncio.gather(*jobs) if len(jobs) > 1 else [await jobs[0]]
        outputs: list[PredictOutput | None] = [None] * len(items)
        for (_, idxs), group_out in zip(groups.items(), results, strict=True):
            for idx, out in zip(idxs, group_out, strict=True):
                outputs[idx] = out
        return [out for out in outputs if out is not None]

    async def _score_group(
        self,
        request_id: str,
        route: ModelRoute,
        version: str,
        arm: str,
        items: list[PredictInput],
        batched: bool,
        positions: list[int],
        deadline: Deadline,
        started: float,
    ) -> list[PredictOutput]:
        model = route.model
        ids = [f"{request_id}/{pos}" if batched else request_id for pos in positions]
        t0 = time.monotonic()
        features_ms = 0.0
        try:
            try:
                desc = await self._catalog.describe(model, version, deadline.budget(what="model lookup"))
            except DEPENDENCY_ERRORS as err:
                raise _Degrade("model_unavailable", err) from err
            rows = await self._fetch_features(desc, items, deadline)
            t1 = time.monotonic()
            features_ms = (t1 - t0) * 1e3
            result_version, scores = await self._infer(model, desc, rows, ids[0], deadline)
        except _Degrade as degrade:
            return await self._fallback(route, items, ids, degrade, deadline, features_ms, started)
        t2 = time.monotonic()
        timings = Timings(features_ms=features_ms, inference_ms=(t2 - t1) * 1e3, total_ms=(t2 - started) * 1e3)
        outputs = [
            PredictOutput(
                request_id=rid,
                model=model,
                model_version=result_version,
                entity_id=item.entity_id,
                score=score,
                arm=arm,
                timings=timings,
                defaulted_features=row.defaulted,
            )
            for rid, item, row, score in zip(ids, items, rows, scores, strict=True)
        ]
        for out, row in zip(outputs, rows, strict=True):
            self.metrics.predictions.labels(model, out.model_version, arm).inc()
            for name in row.defaulted:
                self.metrics.defaulted.labels(model, name).inc()
            self._log(out, desc.features, row.values)
        if route.shadow:
            self._start_shadow(route, desc, items, rows, outputs, result_version)
        return outputs

    async def _fetch_features(
        self, desc: ModelDescriptor, items: Sequence[PredictInput], deadline: Deadline
    ) -> list[FeatureRow]:
        breaker = self._breakers.get(FEATURES)
        if not breaker.allow():
            self.metrics.breaker_open.labels(FEATURES).set(1)
            raise _Degrade("features_circuit_open", Unavailable("features: circuit breaker open"))
        try:
            rows = await self._features.get(
                desc.entity_type,
                [(it.entity_id, it.context) for it in items],
                desc.features,
                deadline.budget(self._limits.features_timeout(len(items)), "feature fetch"),
            )
        except DEPENDENCY_ERRORS as err:
            breaker.record_failure()
            self.metrics.breaker_open.labels(FEATURES).set(1 if breaker.state == breaker.OPEN else 0)
            raise _Degrade("features_unavailable", err) from err
        breaker.record_success()
        self.metrics.breaker_open.labels(FEATURES).set(0)
        if len(rows) != len(items):
            raise Unavailable(f"features service returned {len(rows)} rows for {len(items)} entities")
        return rows

    async def _infer(
        self,
        model: str,
        desc: ModelDescriptor,
        rows: Sequence[FeatureRow],
        request_id: str,
        deadline: Deadline,
    ) -> tuple[str, tuple[Score, ...]]:
        if deadline.remaining() < self._limits.min_inference_budget_s:
            raise _Degrade("deadline_budget", DeadlineExceeded("too little time left for inference"))
        key = f"model:{model}:{desc.version}"
        breaker = self._breakers.get(key)
        if not breaker.allow():
            self.metrics.breaker_open.labels(key).set(1)
            raise _Degrade("model_circuit_open", Unavailable(f"{key}: circuit breaker open"))
        try:
            result = await self._models.infer(
                model,
                desc.version,
                desc.features,
                [row.values for row in rows],
                request_id,
                deadline.budget(self._limits.inference_timeout(len(rows)), "inference"),
            )
        except DEPENDENCY_ERRORS as err:
            breaker.record_failure()
            self.metrics.breaker_open.labels(key).set(1 if breaker.state == breaker.OPEN else 0)
            raise _Degrade("model_unavailable", err) from err
        breaker.record_success()
        self.metrics.breaker_open.labels(key).set(0)
        if len(result.scores) != len(rows):
            raise Unavailable(f"orchestrator returned {len(result.scores)} predictions for {len(rows)} rows")
        return result.version, result.scores

    # -- fallback ------------------------------------------------------------
    async def _fallback(
        self,
        route: ModelRoute,
        items: list[PredictInput],
        ids: list[str],
        degrade: _Degrade,
        deadline: Deadline,
        features_ms: float,
        started: float,
    ) -> list[PredictOutput]:
        if deadline.expired():
            # Nobody is waiting for an answer any more: report the deadline, not a fallback.
            raise DeadlineExceeded("deadline exceeded") from degrade.cause
        for step in route.fallback:
            served = await self._try_step(step, items, ids[0], deadline)
            if served is None:
                continue
            version, scores, names, rows = served
            reason = f"{degrade.reason}: served by {step.label}"
            timings = Timings(features_ms=features_ms, total_ms=(time.monotonic() - started) * 1e3)
            outputs = [
                PredictOutput(
                    request_id=rid,
                    model=route.model,
                    model_version=version,
                    entity_id=item.entity_id,
                    score=score,
                    arm="fallback",
                    timings=timings,
                    degraded=True,
                    degraded_reason=reason,
                )
                for rid, item, score in zip(ids, items, scores, strict=True)
            ]
            for out, row in zip(outputs, rows, strict=True):
                self.metrics.degraded.labels(route.model, degrade.reason, step.label).inc()
                self._log(out, names, row)
            return outputs
        raise degrade.cause

    async def _try_step(
        self, step: FallbackStep, items: list[PredictInput], request_id: str, deadline: Deadline
    ) -> tuple[str, Sequence[Score], tuple[str, ...], list[tuple[Scalar, ...]]] | None:
        if step.kind == "constant":
            assert step.score is not None
            return "constant", [step.score] * len(items), (), [() for _ in items]
        try:
            desc = await self._catalog.describe(step.model, step.version, deadline.budget(what="fallback"))
            missing = sorted({f for f in desc.features for it in items if f not in it.context})
            if missing:
                log.debug("fallback %s skipped: request lacks %s", step.label, missing)
                return None
            rows = [tuple(it.context[f] for f in desc.features) for it in items]
            key = f"model:{step.model}:{desc.version}"
            breaker = self._breakers.get(key)
            if not breaker.allow():
                return None
            try:
                result = await self._models.infer(
                    step.model,
                    desc.version,
                    desc.features,
                    rows,
                    request_id,
                    deadline.budget(self._limits.inference_timeout(len(rows)), "fallback inference"),
                )
            except DEPENDENCY_ERRORS:
                breaker.record_failure()
                raise
            breaker.record_success()
        except (*DEPENDENCY_ERRORS, NotFound, InvalidArgument) as err:
            log.debug("fallback %s failed: %s", step.label, err)
            return None
        return f"{step.model}:{result.version}", result.scores, desc.features, rows

    # -- shadow --------------------------------------------------------------
    def _start_shadow(
        self,
        route: ModelRoute,
        desc: ModelDescriptor,
        items: list[PredictInput],
        rows: list[FeatureRow],
        primary: list[PredictOutput],
        primary_version: str,
    ) -> None:
        for shadow_version in route.shadow:
            if shadow_version == primary_version:
                continue
            if len(self._shadow_tasks) >= self._limits.max_shadow_inflight:
                self.metrics.shadow_dropped.labels(route.model).inc()
                continue
            task = asyncio.get_running_loop().create_task(
                self._shadow(route.model, shadow_version, desc, items, rows, primary)
            )
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(
        self,
        model: str,
        version: str,
        primary_desc: ModelDescriptor,
        items: list[PredictInput],
        rows: list[FeatureRow],
        primary: list[PredictOutput],
    ) -> None:
        n = len(items)
        deadline = Deadline.after(self._limits.features_timeout(n) + self._limits.inference_timeout(n))
        try:
            desc = await self._catalog.describe(model, version, deadline.budget(what="shadow lookup"))
            if desc.features != primary_desc.features:
                rows = await self._features.get(
                    desc.entity_type,
                    [(it.entity_id, it.context) for it in items],
                    desc.features,
                    deadline.budget(self._limits.features_timeout(len(items)), "shadow features"),
                )
            started = time.monotonic()
            result = await self._models.infer(
                model,
                desc.version,
                desc.features,
                [row.values for row in rows],
                primary[0].request_id,
                deadline.budget(self._limits.inference_timeout(len(rows)), "shadow inference"),
            )
        except Exception as err:  # shadow failures never reach callers
            self.metrics.shadow_errors.labels(model, version).inc()
            log.debug("shadow %s:%s failed: %s", model, version, err)
            return
        latency_ms = (time.monotonic() - started) * 1e3
        for out, row, score in zip(primary, rows, result.scores, strict=True):
            agree = score.label == out.score.label
            self.metrics.shadow_compared.labels(model, version, "true" if agree else "false").inc()
            self.metrics.shadow_delta.labels(model, version).observe(score.score - out.score.score)
            shadow_out = PredictOutput(
                request_id=out.request_id,
                model=model,
                model_version=result.version,
                entity_id=out.entity_id,
                score=score,
                arm="shadow",
                timings=Timings(inference_ms=latency_ms, total_ms=latency_ms),
                defaulted_features=row.defaulted,
            )
            self._log(shadow_out, desc.features, row.values)

    # -- logging -------------------------------------------------------------
    def _log(self, out: PredictOutput, names: Sequence[str], values: Sequence[Scalar]) -> None:
        if self._sink is None:
            return
        sample = self._limits.log_features_sample
        with_features = sample > 0 and (sample >= 1 or random.random() < sample)
        record = PredictionRecord(
            request_id=out.request_id,
            model=out.model,
            model_version=out.model_version,
            arm=out.arm,
            entity_id=out.entity_id,
            features_hash=features_hash(names, values),
            score=out.score,
            latency_ms=out.timings.total_ms,
            degraded=out.degraded,
            degraded_reason=out.degraded_reason,
            timestamp_s=time.time(),
            defaulted_features=out.defaulted_features,
            trace_id=telemetry.current_trace_id(),
            traceparent=telemetry.current_traceparent(),
            features=tuple(zip(names, values, strict=True)) if with_features and names else (),
        )
        if not self._sink.emit(record):
            self.metrics.log_dropped.inc()
            log.warning("prediction log buffer full: record for %s dropped", out.request_id)
