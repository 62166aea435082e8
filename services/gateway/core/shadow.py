"""Shadow scoring: a sample of answered requests is scored again by the route's shadow versions.

Off the hot path: `ShadowRunner.offer` never blocks and never raises; the rows it takes are
scored later, in coalesced batches (one lookup, at most one GetFeatures, one Infer per batch
of a shadow version), on the runner's own deadline (upstream timeouts from the limits), never
on the primary request's. Results are compared with the primary (agreement counter, score
delta histogram) and logged with arm `shadow` and the primary's request id and trace; they
are never returned. Failures are counted (`shadow_errors`), never raised.

Sampling: each route has a `shadow_ratio`; every scored entity is shadowed with that
probability. At most `max_shadow_inflight` jobs (one per request and shadow version) are
queued or running; more are dropped and counted (`shadow_dropped`).

Ownership: the runner owns its batches (through its `Coalescer`); `drain()` at shutdown.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from predmesh.common.deadline import Deadline
from services.gateway.core.breaker import expect_count
from services.gateway.core.coalescer import Coalescer
from services.gateway.core.deps import PathDeps
from services.gateway.core.outputs import LogEntry, TraceIds, build_outputs
from services.gateway.core.routing import ModelRoute
from services.gateway.core.types import (
    Arm,
    FeatureRow,
    ModelDescriptor,
    PredictInput,
    PredictOutput,
    Score,
    Timings,
)

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class ShadowJob:
    """Rows of one answered request, to be scored by one shadow version."""

    primary_features: tuple[str, ...]
    items: Sequence[PredictInput]
    feature_rows: Sequence[FeatureRow]
    primary: Sequence[PredictOutput]
    trace: TraceIds
    on_done: Callable[[ShadowJob, BaseException | None], None]
    done: bool = False

    @property
    def rows(self) -> int:
        return len(self.items)

    def finish(self, err: BaseException | None = None) -> None:
        if not self.done:
            self.done = True
            self.on_done(self, err)

    def fail(self, err: BaseException) -> None:
        self.finish(err)


class ShadowRunner:
    def __init__(self, deps: PathDeps, rng: random.Random | None = None) -> None:
        self._d = deps
        self._rng = rng or random.Random()
        self._batches: Coalescer[tuple[str, str], ShadowJob] = Coalescer(self._run, deps.limits.shadow_window)
        self._inflight: dict[ShadowJob, tuple[str, str]] = {}

    @property
    def inflight(self) -> int:
        """Shadow jobs queued or running."""
        return len(self._inflight)

    def offer(
        self,
        route: ModelRoute,
        desc: ModelDescriptor,
        served_version: str,
        items: Sequence[PredictInput],
        rows: Sequence[FeatureRow],
        outputs: Sequence[PredictOutput],
        trace: TraceIds,
    ) -> None:
        """Queue a sample of these answered rows for every shadow version of the route."""
        versions = [v for v in route.shadow if v != served_version]
        if not versions or route.shadow_ratio <= 0:
            return
        ratio = route.shadow_ratio
        picked = range(len(items)) if ratio >= 1 else [i for i in range(len(items)) if self._rng.random() < ratio]
        if not picked:
            return
        for version in versions:
            if len(self._inflight) >= self._d.limits.max_shadow_inflight:
                self._d.metrics.shadow_dropped.labels(route.model).inc()
                continue
            job = ShadowJob(
                desc.features,
                [items[i] for i in picked],
                [rows[i] for i in picked],
                [outputs[i] for i in picked],
                trace,
                self._finished,
            )
            self._inflight[job] = (route.model, version)
            self._batches.submit((route.model, version), job)

    async def drain(self, timeout_s: float) -> None:
        """Score what is queued, wait up to `timeout_s`, cancel the rest."""
        await self._batches.drain(timeout_s)

    def _finished(self, job: ShadowJob, err: BaseException | None) -> None:
        model, version = self._inflight.pop(job)
        if err is not None:
            self._d.metrics.shadow_errors.labels(model, version).inc()
            log.debug("shadow %s:%s failed: %s", model, version, err)

    async def _run(self, key: tuple[str, str], jobs: list[ShadowJob]) -> None:
        model, version = key
        n = sum(job.rows for job in jobs)
        self._d.metrics.bound(self._d.metrics.batch_rows, model, "shadow").observe(n)
        deadline = Deadline.after(self._d.limits.features_timeout(n) + self._d.limits.inference_timeout(n))
        try:
            desc = await self._d.catalog.describe(model, version, deadline.budget(what="shadow lookup"))
            rows = await self._rows(desc, jobs, deadline)
            started = time.monotonic()
            result = await self._d.models.infer(
                model,
                desc.version,
                desc.features,
                [row.values for row in rows],
                jobs[0].primary[0].request_id,
                deadline.budget(self._d.limits.inference_timeout(len(rows)), "shadow inference"),
            )
            expect_count(len(result.scores), len(rows), "shadow model returned {} scores for {} rows")
        except Exception as err:  # shadow failures never reach callers
            for job in jobs:
                job.fail(err)
            return
        latency_ms = (time.monotonic() - started) * 1e3
        entries: list[LogEntry] = []
        offset = 0
        for job in jobs:
            end = offset + job.rows
            scores = result.scores[offset:end]
            entries.append(self._compare(key, desc, result.version, job, rows[offset:end], scores, latency_ms))
            offset = end
        self._d.log.emit_many(entries)  # one log batch per shadow batch
        for job in jobs:
            job.finish()

    async def _rows(self, desc: ModelDescriptor, jobs: list[ShadowJob], deadline: Deadline) -> list[FeatureRow]:
        """The primary's rows where the shadow needs the same features; one fetch for the others."""
        refetch = [it for job in jobs if job.primary_features != desc.features for it in job.items]
        fetched: list[FeatureRow] = []
        if refetch:
            entities = [(it.entity_id, it.context) for it in refetch]
            budget = deadline.budget(self._d.limits.features_timeout(len(refetch)), "shadow features")
            if any(it.entities for it in refetch):
                related = [it.entities for it in refetch]
                fetched = await self._d.features.get(desc.entity_type, entities, desc.features, budget, related=related)
            else:
                fetched = await self._d.features.get(desc.entity_type, entities, desc.features, budget)
            expect_count(len(fetched), len(refetch), "features service returned {} rows for {} entities")
        rows: list[FeatureRow] = []
        pos = 0
        for job in jobs:
            if job.primary_features == desc.features:
                rows.extend(job.feature_rows)
            else:
                rows.extend(fetched[pos : pos + job.rows])
                pos += job.rows
        return rows

    def _compare(
        self,
        key: tuple[str, str],
        desc: ModelDescriptor,
        served_version: str,
        job: ShadowJob,
        rows: Sequence[FeatureRow],
        scores: Sequence[Score],
        latency_ms: float,
    ) -> LogEntry:
        """Count agreement with the primary; the job's log entry (arm `shadow`)."""
        model, version = key
        metrics = self._d.metrics
        delta = metrics.bound(metrics.shadow_delta, model, version)
        for primary, score in zip(job.primary, scores, strict=True):
            agree = score.label == primary.score.label
            metrics.bound(metrics.shadow_compared, model, version, "true" if agree else "false").inc()
            delta.observe(score.score - primary.score.score)
        ids = [out.request_id for out in job.primary]
        timings = Timings(inference_ms=latency_ms, total_ms=latency_ms)
        defaulted = [row.defaulted for row in rows]
        outputs = build_outputs(ids, job.items, model, served_version, scores, Arm.SHADOW, timings, defaulted)
        return LogEntry(outputs, desc.features, [row.values for row in rows], job.trace)
