"""The fallback chain: answer a request whose primary path failed for a dependency reason.

Steps are tried in the route's order: a model step scores the request's own context (it
must not need stored features), a constant step always answers. Answers are marked
`degraded` with the reason and the step that served them, and logged. When no step
answers, the original dependency error reaches the caller; when the request's deadline has
already passed, nobody waits for an answer any more, so DEADLINE_EXCEEDED is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from predmesh.common.deadline import Deadline
from services.gateway.core.breaker import DEPENDENCY_ERRORS, expect_count
from services.gateway.core.deps import PathDeps
from services.gateway.core.outputs import TraceIds, build_outputs
from services.gateway.core.routing import FallbackStep, ModelRoute
from services.gateway.core.types import Arm, PredictInput, PredictOutput, Scalar, Score, Timings
from services.gateway.errors import DeadlineExceeded, InvalidArgument, NotFound, PredmeshError

log = logging.getLogger(__name__)


class Degrade(Exception):
    """The primary path failed for a dependency reason; the request goes to its fallback chain."""

    def __init__(self, reason: str, cause: PredmeshError, features_ms: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.features_ms = features_ms

    def copy(self) -> Degrade:
        """A fresh instance for one more waiter (an exception object is raised in one place)."""
        return Degrade(self.reason, self.cause, self.features_ms)


@dataclass(frozen=True, slots=True)
class _Served:
    version: str
    scores: Sequence[Score]
    names: tuple[str, ...]
    rows: list[tuple[Scalar, ...]]


class FallbackChain:
    """Stateless apart from the shared catalog and breakers (`PathDeps`); one per predictor."""

    def __init__(self, deps: PathDeps) -> None:
        self._d = deps

    async def answer(
        self,
        route: ModelRoute,
        items: Sequence[PredictInput],
        ids: Sequence[str],
        degrade: Degrade,
        deadline: Deadline,
        started: float,
        trace: TraceIds,
    ) -> list[PredictOutput]:
        if deadline.expired():
            raise DeadlineExceeded("deadline exceeded") from degrade.cause
        for step in route.fallback:
            served = await self._try(step, items, ids[0], deadline)
            if served is None:
                continue
            timings = Timings(features_ms=degrade.features_ms, total_ms=(self._d.clock() - started) * 1e3)
            reason = f"{degrade.reason}: served by {step.label}"
            outputs = build_outputs(
                ids, items, route.model, served.version, served.scores, Arm.FALLBACK, timings, degraded_reason=reason
            )
            self._d.metrics.degraded.labels(route.model, degrade.reason, step.label).inc(len(outputs))
            self._d.log.emit(outputs, served.names, served.rows, trace)
            return outputs
        raise degrade.cause

    async def _try(
        self, step: FallbackStep, items: Sequence[PredictInput], request_id: str, deadline: Deadline
    ) -> _Served | None:
        if step.kind == "constant":
            assert step.score is not None, "a constant step always has a score (routing validates it)"
            return _Served("constant", [step.score] * len(items), (), [() for _ in items])
        try:
            desc = await self._d.catalog.describe(step.model, step.version, deadline.budget(what="fallback"))
            missing = sorted({f for f in desc.features for it in items if f not in it.context})
            if missing:
                log.debug("fallback %s skipped: request lacks %s", step.label, missing)
                return None
            rows = [tuple(it.context[f] for f in desc.features) for it in items]
            budget = deadline.budget(self._d.limits.inference_timeout(len(rows)), "fallback inference")
            result = await self._d.breakers.call(
                f"model:{step.model}:{desc.version}",
                lambda: self._d.models.infer(step.model, desc.version, desc.features, rows, request_id, budget),
                lambda res: expect_count(len(res.scores), len(rows), "fallback model returned {} scores for {} rows"),
            )
        except (*DEPENDENCY_ERRORS, NotFound, InvalidArgument) as err:
            log.debug("fallback %s failed: %s", step.label, err)
            return None
        return _Served(f"{step.model}:{result.version}", result.scores, desc.features, rows)
