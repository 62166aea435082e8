"""The primary path's batched call: one model lookup, one GetFeatures, one Infer for many requests.

`BatchScorer.run` is the `Coalescer`'s run function for the primary path. Every `ScoreJob`
(one Predict, or one chunk of a PredictBatch group) is answered through its own future with
its finished outputs, built here for the whole batch: the batch's prediction records go to
the log in **one** `emit_many`, and the answered rows are offered to the shadow runner. The
batched call gets the latest deadline of its members (each member still waits only until its
own deadline, see `Predictor`); a member with too little budget left for inference goes to
its fallback chain alone. When the batched call fails for a dependency reason, every member
is answered through its own route's fallback chain, with one batched call per fallback step
for all of them (`FallbackChain.answer_many`). Dependency calls go through the circuit
breakers; an answer with the wrong number of rows is a dependency failure. Caller errors
(NOT_FOUND) reach every member as such.

Tracing: a batch of one request runs in that request's trace; a larger batch runs in one
span linked to every member's trace, with a `queue_wait` span in each (`telemetry.batch_span`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from opentelemetry import context as otel_context

from predmesh.common import telemetry
from predmesh.common.deadline import Deadline
from services.gateway.core.breaker import DEPENDENCY_ERRORS, CircuitOpen, expect_count
from services.gateway.core.degradation import with_features_verdicts
from services.gateway.core.deps import PathDeps
from services.gateway.core.fallback import Degrade, FallbackChain, Fallen, Rescued
from services.gateway.core.outputs import NO_TRACE, LogEntry, TraceIds, build_outputs
from services.gateway.core.priority import most_urgent
from services.gateway.core.routing import ModelRoute
from services.gateway.core.shadow import ShadowRunner
from services.gateway.core.types import (
    Arm,
    FeatureRow,
    InferenceResult,
    ModelDescriptor,
    PredictInput,
    PredictOutput,
    Timings,
)
from services.gateway.errors import DeadlineExceeded, PredmeshError

T = TypeVar("T")
FEATURES = "features"


class LaneKey(NamedTuple):
    """The coalescing lane of a job: model, serving version, and whether it is background work
    (async or batch priority), which never shares a lane (nor its in-flight slots) with real-time."""

    model: str
    version: str
    background: bool = False


@dataclass(eq=False, slots=True)
class ScoreJob:
    """One request's items (all routed to one arm) waiting for a batched call; answered once
    through `future` with its outputs in item order. `ids` are the items' request ids."""

    route: ModelRoute
    arm: Arm
    items: Sequence[PredictInput]
    ids: Sequence[str]
    deadline: Deadline
    started: float
    future: asyncio.Future[list[PredictOutput]]
    enqueued_s: float
    trace_ids: TraceIds = NO_TRACE
    trace: telemetry.QueuedTrace | None = None

    @property
    def rows(self) -> int:
        return len(self.items)

    def answer(self, outputs: list[PredictOutput]) -> None:
        if not self.future.done():
            self.future.set_result(outputs)

    def fail(self, err: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(err)


@dataclass(frozen=True, slots=True)
class _Share:
    job: ScoreJob
    rows: Sequence[FeatureRow]


class BatchScorer:
    def __init__(self, deps: PathDeps, fallback: FallbackChain, shadow: ShadowRunner) -> None:
        self._d = deps
        self._fallback = fallback
        self._shadow = shadow

    async def run(self, key: LaneKey, jobs: list[ScoreJob]) -> None:
        """Score `jobs` (all for model + version of `key`) together and answer each one."""
        model, version = key.model, key.version
        jobs = [job for job in jobs if not job.future.done()]  # gone: deadline passed or cancelled
        if not jobs:
            return
        metrics = self._d.metrics
        now = self._d.clock()
        metrics.bound(metrics.batch_rows, model, "primary").observe(sum(job.rows for job in jobs))
        wait = metrics.bound(metrics.window_wait, model, "primary")
        for job in jobs:
            wait.observe(now - job.enqueued_s)
        with _traced(model, jobs):
            try:
                fallen = await self._score(model, version, jobs)
            except Degrade as degrade:  # the batched call failed: every member to its fallback chain
                fallen = [(job, degrade) for job in jobs]
            except PredmeshError as err:  # a caller error (NOT_FOUND) or no time left at all
                for job in jobs:
                    job.fail(err)
                return
            if fallen:
                await self._fall_back(fallen)

    async def _score(self, model: str, version: str, jobs: list[ScoreJob]) -> list[tuple[ScoreJob, Degrade]]:
        """Answer the members the primary path serves; the others are returned with their reason."""
        deadline = Deadline(max(job.deadline.at for job in jobs))
        try:
            desc = await self._d.catalog.describe(model, version, deadline.budget(what="model lookup"))
        except DEPENDENCY_ERRORS as err:
            raise Degrade("model_unavailable", err) from err
        rows, features_ms = await self._fetch(desc, [it for job in jobs for it in job.items], deadline)

        ready: list[_Share] = []
        fallen: list[tuple[ScoreJob, Degrade]] = []
        offset = 0
        for job in jobs:
            share, offset = rows[offset : offset + job.rows], offset + job.rows
            if job.deadline.remaining() < self._d.limits.min_inference_budget_s:
                cause = DeadlineExceeded("too little time left for inference")
                fallen.append((job, Degrade("deadline_budget", cause, features_ms)))
            else:
                ready.append(_Share(job, share))
        if not ready:
            return fallen
        infer_rows = [row for part in ready for row in part.rows]
        deadline = Deadline(max(part.job.deadline.at for part in ready))
        t0 = self._d.clock()
        try:
            # The batch's class: its most urgent request's (0 = unspecified counts as real-time).
            priority = most_urgent(it.priority for part in ready for it in part.job.items)
            result = await self._infer(model, desc, infer_rows, ready[0].job.ids[0], deadline, priority)
        except Degrade as degrade:
            degrade.features_ms = features_ms
            return fallen + [(part.job, degrade) for part in ready]
        self._answer(desc, result, ready, features_ms, (self._d.clock() - t0) * 1e3)
        return fallen

    def _answer(
        self, desc: ModelDescriptor, result: InferenceResult, ready: list[_Share], features_ms: float, infer_ms: float
    ) -> None:
        """Build every member's outputs, log them in one batch, answer, offer to the shadow."""
        metrics = self._d.metrics
        now = self._d.clock()
        answers: list[tuple[_Share, list[PredictOutput]]] = []
        entries: list[LogEntry] = []
        per_arm: dict[tuple[str, Arm], int] = {}
        offset = 0
        for part in ready:
            job, n = part.job, len(part.rows)
            route = job.route
            scores, offset = result.scores[offset : offset + n], offset + n
            timings = Timings(features_ms, infer_ms, (now - job.started) * 1e3)
            defaulted = [row.defaulted for row in part.rows]
            fresh = build_outputs(job.ids, job.items, route.model, result.version, scores, job.arm, timings, defaulted)
            outputs = with_features_verdicts(fresh, part.rows, route.max_missing_features)
            if outputs is not fresh:
                served_by = f"{route.model}:{result.version}"
                for out in outputs:
                    if out.degraded:  # scored by the requested model, but on defaults for missing stored features
                        metrics.degraded.labels(route.model, out.degraded_reason, served_by).inc()
            per_arm[(route.model, job.arm)] = per_arm.get((route.model, job.arm), 0) + n
            for names in defaulted:
                for name in names:
                    metrics.defaulted.labels(route.model, name).inc()
            entries.append(LogEntry(outputs, desc.features, [row.values for row in part.rows], job.trace_ids))
            answers.append((part, outputs))
        for (model, arm), n in per_arm.items():
            metrics.bound(metrics.predictions, model, result.version, arm).inc(n)
        self._d.log.emit_many(entries)
        for part, outputs in answers:
            job = part.job
            job.answer(outputs)
            self._shadow.offer(job.route, desc, result.version, job.items, part.rows, outputs, job.trace_ids)

    async def _fall_back(self, fallen: list[tuple[ScoreJob, Degrade]]) -> None:
        """Answer failed members through their fallback chains (batched per step), one log batch."""
        fallen = [(job, degrade) for job, degrade in fallen if not job.future.done()]
        members = [Fallen(job.route, job.items, job.ids, degrade, job.deadline, job.started) for job, degrade in fallen]
        outcomes = await self._fallback.answer_many(members)
        entries: list[LogEntry] = []
        answers: list[tuple[ScoreJob, list[PredictOutput]]] = []
        for (job, _), outcome in zip(fallen, outcomes, strict=True):
            if isinstance(outcome, Rescued):
                entries.append(LogEntry(outcome.outputs, outcome.names, outcome.rows, job.trace_ids))
                answers.append((job, outcome.outputs))
            else:
                job.fail(outcome)
        self._d.log.emit_many(entries)
        for job, outputs in answers:
            job.answer(outputs)

    async def _fetch(
        self, desc: ModelDescriptor, items: Sequence[PredictInput], deadline: Deadline
    ) -> tuple[Sequence[FeatureRow], float]:
        budget = _budget(deadline, self._d.limits.features_timeout(len(items)), "feature fetch")
        entities = [(it.entity_id, it.context) for it in items]
        # Other entity types only when some item names them (one round trip for all groups either way).
        related = [it.entities for it in items] if any(it.entities for it in items) else None
        get = self._d.features.get
        t0 = self._d.clock()
        rows = await self._guarded(
            FEATURES,
            FEATURES,
            lambda: (
                get(desc.entity_type, entities, desc.features, budget, related=related)
                if related is not None
                else get(desc.entity_type, entities, desc.features, budget)
            ),
            lambda got: expect_count(len(got), len(items), "features service returned {} rows for {} entities"),
        )
        return rows, (self._d.clock() - t0) * 1e3

    async def _infer(
        self,
        model: str,
        desc: ModelDescriptor,
        rows: Sequence[FeatureRow],
        request_id: str,
        deadline: Deadline,
        priority: int = 0,
    ) -> InferenceResult:
        budget = _budget(deadline, self._d.limits.inference_timeout(len(rows)), "inference")
        values = [row.values for row in rows]
        return await self._guarded(
            "model",
            f"model:{model}:{desc.version}",
            lambda: self._d.models.infer(model, desc.version, desc.features, values, request_id, budget, priority),
            lambda res: expect_count(len(res.scores), len(rows), "orchestrator returned {} predictions for {} rows"),
        )

    async def _guarded(
        self, dependency: str, key: str, call: Callable[[], Awaitable[T]], check: Callable[[T], None]
    ) -> T:
        """A breaker-guarded call; its failure becomes `<dependency>_circuit_open` or `_unavailable`."""
        try:
            return await self._d.breakers.call(key, call, check)
        except CircuitOpen as err:
            raise Degrade(f"{dependency}_circuit_open", err) from err
        except DEPENDENCY_ERRORS as err:
            raise Degrade(f"{dependency}_unavailable", err) from err


def _budget(deadline: Deadline, cap: float, what: str) -> float:
    try:
        return deadline.budget(cap, what)
    except DeadlineExceeded as err:
        raise Degrade("deadline_budget", err) from err


@contextmanager
def _traced(model: str, jobs: Sequence[ScoreJob]) -> Iterator[None]:
    traces = [job.trace for job in jobs if job.trace is not None]
    if not traces:
        yield
    elif len(traces) == 1:
        token = otel_context.attach(traces[0].context)
        try:
            yield
        finally:
            otel_context.detach(token)
    else:
        with telemetry.batch_span("predmesh.gateway/batch", traces, {"predmesh.model": model}):
            yield
