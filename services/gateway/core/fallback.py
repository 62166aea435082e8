"""The fallback chain: answer requests whose primary path failed for a dependency reason.

The members of a failed coalesced batch are answered together (`answer_many`): the steps of
each route's chain are tried in order, and every step is **one** call for all the members
still unanswered (one model lookup and one Infer for a model step), not one per member. A
model step scores a member's own context (it must not need stored features): a member whose
context lacks one of the step's features skips that step. A constant step answers everyone
left. Answers are marked `degraded` with each member's reason and the step that served it.
A member with no answer gets its original dependency error; a member whose deadline has
passed gets DEADLINE_EXCEEDED (nobody waits for its answer any more). Logging is the
caller's (one log batch per coalesced batch).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from predmesh.common.deadline import Deadline
from services.gateway.core.breaker import DEPENDENCY_ERRORS, expect_count
from services.gateway.core.deps import PathDeps
from services.gateway.core.outputs import build_outputs
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
class Fallen:
    """One request (or PredictBatch chunk) of a batch whose primary call failed."""

    route: ModelRoute
    items: Sequence[PredictInput]
    ids: Sequence[str]
    degrade: Degrade
    deadline: Deadline
    started: float


@dataclass(frozen=True, slots=True)
class Rescued:
    """A fallen member's answers and what they were scored on (for its log records)."""

    outputs: list[PredictOutput]
    names: tuple[str, ...]
    rows: list[tuple[Scalar, ...]]


@dataclass(frozen=True, slots=True)
class _Served:
    version: str
    scores: Sequence[Score]
    names: tuple[str, ...]
    rows: list[tuple[Scalar, ...]]


Outcome = Rescued | PredmeshError


class FallbackChain:
    """Stateless apart from the shared catalog and breakers (`PathDeps`); one per predictor."""

    def __init__(self, deps: PathDeps) -> None:
        self._d = deps

    async def answer_many(self, members: Sequence[Fallen]) -> list[Outcome]:
        """One outcome per member, in order: its fallback answers, or the error for its caller."""
        outcomes: list[Outcome | None] = [None] * len(members)
        chains: dict[int, list[int]] = {}  # members of one route share its chain (and its calls)
        for pos, member in enumerate(members):
            chains.setdefault(id(member.route), []).append(pos)
        walks = [self._walk(members, positions, outcomes) for positions in chains.values()]
        if len(walks) == 1:
            await walks[0]
        else:
            await asyncio.gather(*walks)
        return [out if out is not None else members[pos].degrade.cause for pos, out in enumerate(outcomes)]

    async def _walk(self, members: Sequence[Fallen], positions: list[int], outcomes: list[Outcome | None]) -> None:
        route = members[positions[0]].route
        left = positions
        for step in route.fallback:
            left = [pos for pos in left if not _expired(members[pos], outcomes, pos)]
            if not left:
                return
            served = await self._try(step, [members[pos] for pos in left])
            for pos, got in zip(left, served, strict=True):
                if got is not None:
                    outcomes[pos] = self._rescued(route, step, members[pos], got)
            left = [pos for pos in left if outcomes[pos] is None]
        for pos in left:
            _expired(members[pos], outcomes, pos)

    def _rescued(self, route: ModelRoute, step: FallbackStep, member: Fallen, served: _Served) -> Rescued:
        degrade = member.degrade
        timings = Timings(features_ms=degrade.features_ms, total_ms=(self._d.clock() - member.started) * 1e3)
        outputs = build_outputs(
            member.ids,
            member.items,
            route.model,
            served.version,
            served.scores,
            Arm.FALLBACK,
            timings,
            degraded_reason=f"{degrade.reason}: served by {step.label}",
        )
        self._d.metrics.degraded.labels(route.model, degrade.reason, step.label).inc(len(outputs))
        return Rescued(outputs, served.names, served.rows)

    async def _try(self, step: FallbackStep, members: Sequence[Fallen]) -> list[_Served | None]:
        """What `step` answers for each member (None: not answered), with at most one Infer."""
        if step.kind == "constant":
            assert step.score is not None, "a constant step always has a score (routing validates it)"
            score = step.score
            return [_Served("constant", [score] * len(m.items), (), [() for _ in m.items]) for m in members]
        answered: list[_Served | None] = [None] * len(members)
        deadline = Deadline(max(m.deadline.at for m in members))
        try:
            desc = await self._d.catalog.describe(step.model, step.version, deadline.budget(what="fallback"))
            able = [pos for pos, m in enumerate(members) if self._has_context(step, desc.features, m)]
            if not able:
                return answered
            shares = [[tuple(it.context[f] for f in desc.features) for it in members[pos].items] for pos in able]
            rows = [row for share in shares for row in share]
            budget = deadline.budget(self._d.limits.inference_timeout(len(rows)), "fallback inference")
            request_id = members[able[0]].ids[0]
            result = await self._d.breakers.call(
                f"model:{step.model}:{desc.version}",
                lambda: self._d.models.infer(step.model, desc.version, desc.features, rows, request_id, budget),
                lambda res: expect_count(len(res.scores), len(rows), "fallback model returned {} scores for {} rows"),
            )
        except (*DEPENDENCY_ERRORS, NotFound, InvalidArgument) as err:
            log.debug("fallback %s failed: %s", step.label, err)
            return answered
        version = f"{step.model}:{result.version}"
        offset = 0
        for pos, share in zip(able, shares, strict=True):
            scores, offset = result.scores[offset : offset + len(share)], offset + len(share)
            answered[pos] = _Served(version, scores, desc.features, share)
        return answered

    @staticmethod
    def _has_context(step: FallbackStep, names: Sequence[str], member: Fallen) -> bool:
        missing = sorted({f for f in names for it in member.items if f not in it.context})
        if missing:
            log.debug("fallback %s skipped for %s: request lacks %s", step.label, member.ids[0], missing)
        return not missing


def _expired(member: Fallen, outcomes: list[Outcome | None], pos: int) -> bool:
    """True (and DEADLINE_EXCEEDED as its outcome) when nobody waits for the member any more."""
    if not member.deadline.expired():
        return False
    err = DeadlineExceeded("deadline exceeded")
    err.__cause__ = member.degrade.cause
    outcomes[pos] = err
    return True
