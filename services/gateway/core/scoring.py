"""The primary path's batched call: one model lookup, one GetFeatures, one Infer for many requests.

`BatchScorer.run` is the `Coalescer`'s run function for the primary path. Every `ScoreJob`
(one Predict, or one chunk of a PredictBatch group) is answered through its own future:
with its slice of the rows and scores, or with a `Degrade` that sends that request to its
own fallback chain. The batched call gets the latest deadline of its members (each member
still waits only until its own deadline, see `Predictor`); a member with too little budget
left for inference is answered `deadline_budget` alone. Dependency calls go through the
circuit breakers; an answer with the wrong number of rows is a dependency failure.

Tracing: a batch of one request runs in that request's trace; a larger batch runs in one
span linked to every member's trace, with a `queue_wait` span in each (`telemetry.batch_span`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry import context as otel_context

from predmesh.common import telemetry
from predmesh.common.deadline import Deadline
from services.gateway.core.breaker import DEPENDENCY_ERRORS, CircuitOpen, expect_count
from services.gateway.core.deps import PathDeps
from services.gateway.core.fallback import Degrade
from services.gateway.core.types import FeatureRow, InferenceResult, ModelDescriptor, PredictInput, Score
from services.gateway.errors import DeadlineExceeded, PredmeshError

T = TypeVar("T")
FEATURES = "features"


@dataclass(frozen=True, slots=True)
class Scored:
    """A job's share of a batched call, aligned with its items."""

    desc: ModelDescriptor
    version: str
    rows: Sequence[FeatureRow]
    scores: Sequence[Score]
    features_ms: float
    inference_ms: float


@dataclass(eq=False, slots=True)
class ScoreJob:
    """One request's items waiting for a batched call; answered once through `future`."""

    items: Sequence[PredictInput]
    request_id: str
    deadline: Deadline
    future: asyncio.Future[Scored]
    enqueued_s: float
    trace: telemetry.QueuedTrace | None = None

    @property
    def rows(self) -> int:
        return len(self.items)

    def answer(self, scored: Scored) -> None:
        if not self.future.done():
            self.future.set_result(scored)

    def fail(self, err: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(err.copy() if isinstance(err, Degrade) else err)


class BatchScorer:
    def __init__(self, deps: PathDeps) -> None:
        self._d = deps

    async def run(self, key: tuple[str, str], jobs: list[ScoreJob]) -> None:
        """Score `jobs` (all for model + version `key`) together and answer each one."""
        model, version = key
        jobs = [job for job in jobs if not job.future.done()]  # gone: deadline passed or cancelled
        if not jobs:
            return
        now = self._d.clock()
        self._d.metrics.batch_rows.labels(model, "primary").observe(sum(job.rows for job in jobs))
        for job in jobs:
            self._d.metrics.window_wait.labels(model, "primary").observe(now - job.enqueued_s)
        with _traced(model, jobs):
            try:
                await self._score(model, version, jobs)
            except (Degrade, PredmeshError) as err:  # a dependency failure, or a caller error (NOT_FOUND)
                for job in jobs:
                    job.fail(err)

    async def _score(self, model: str, version: str, jobs: list[ScoreJob]) -> None:
        deadline = Deadline(max(job.deadline.at for job in jobs))
        try:
            desc = await self._d.catalog.describe(model, version, deadline.budget(what="model lookup"))
        except DEPENDENCY_ERRORS as err:
            raise Degrade("model_unavailable", err) from err
        rows, features_ms = await self._fetch(desc, [it for job in jobs for it in job.items], deadline)

        ready: list[tuple[ScoreJob, Sequence[FeatureRow]]] = []
        offset = 0
        for job in jobs:
            share, offset = rows[offset : offset + job.rows], offset + job.rows
            if job.deadline.remaining() < self._d.limits.min_inference_budget_s:
                cause = DeadlineExceeded("too little time left for inference")
                job.fail(Degrade("deadline_budget", cause, features_ms))
            else:
                ready.append((job, share))
        if not ready:
            return
        infer_rows = [row for _, share in ready for row in share]
        deadline = Deadline(max(job.deadline.at for job, _ in ready))
        t0 = self._d.clock()
        try:
            result = await self._infer(model, desc, infer_rows, ready[0][0].request_id, deadline)
        except Degrade as degrade:
            degrade.features_ms = features_ms
            raise
        inference_ms = (self._d.clock() - t0) * 1e3
        offset = 0
        for job, share in ready:
            scores, offset = result.scores[offset : offset + len(share)], offset + len(share)
            job.answer(Scored(desc, result.version, share, scores, features_ms, inference_ms))

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
        self, model: str, desc: ModelDescriptor, rows: Sequence[FeatureRow], request_id: str, deadline: Deadline
    ) -> InferenceResult:
        budget = _budget(deadline, self._d.limits.inference_timeout(len(rows)), "inference")
        values = [row.values for row in rows]
        return await self._guarded(
            "model",
            f"model:{model}:{desc.version}",
            lambda: self._d.models.infer(model, desc.version, desc.features, values, request_id, budget),
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
