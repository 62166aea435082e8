"""Scoring one chunk of a batch job through the gateway's own PredictBatch path, in the batch lane.

Rows go to `Predictor.predict_batch` in calls of at most `items_per_call` rows (the same feature
assembly, routing, inference, fallback and logging as a PredictBatch call), each admitted by
`LaneAdmission` as batch work: it waits while the batch lane is full (real-time traffic first) and
is never refused. With an adaptive pace (core/pace.py, on the admission) each call first pauses as
long and carries as many rows as the pace says, from the real-time latency it measures.
Before each call it also waits (at most `yield_max_s`) for a moment with no real-time request in
flight on this replica, and with `duty_cycle` < 1 it pauses after each call so that batch calls
take at most that share of the time: both keep real-time latency close to its value without the job.
A row with a bad value (no entity id, NaN) gets its own error; a call failing with a retriable
code (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED) is retried with back-off, then its rows
carry the error. `keep_going()` is asked before each call: False abandons the chunk (cancelled
job, lost lease) with `Abandoned`. One event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from predmesh.common import batchfiles
from predmesh.common.deadline import Deadline
from predmesh.common.errors import ErrorCode
from services.gateway.core.batch_ports import JobSpec
from services.gateway.core.degradation import check_context_value
from services.gateway.core.predictor import Predictor
from services.gateway.core.priority import LaneAdmission, Priority
from services.gateway.core.types import PredictInput, PredictOutput
from services.gateway.errors import InvalidArgument, PredmeshError

Row = dict[str, Any]
_RETRIABLE = {ErrorCode.UNAVAILABLE, ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.DEADLINE_EXCEEDED}


class Abandoned(Exception):
    """The chunk is no longer wanted (job cancelled or lease lost): nothing is written."""


@dataclass(frozen=True)
class ScoringLimits:
    items_per_call: int = 1024
    call_timeout_s: float = 30.0
    attempts: int = 4
    backoff_s: float = 0.2
    yield_max_s: float = 0.05  # longest wait for a gap in real-time traffic before a call (0 = none)
    duty_cycle: float = 1.0  # share of wall time spent in batch calls (1 = full speed)


class ChunkScorer:
    def __init__(self, predictor: Predictor, admission: LaneAdmission, limits: ScoringLimits) -> None:
        self._predictor = predictor
        self._admission = admission
        self._limits = limits

    async def score(
        self, spec: JobSpec, chunk: int, rows: Sequence[Row], keep_going: Callable[[], Awaitable[bool]]
    ) -> list[Row]:
        """One result per row, in order."""
        results: list[Row] = [{} for _ in rows]
        start = 0
        while start < len(rows):
            if not await keep_going():
                raise Abandoned(f"job {spec.job_id} chunk {chunk}")
            step = await self._turn()
            inputs: list[PredictInput] = []
            positions: list[int] = []
            for offset, row in enumerate(rows[start : start + step]):
                try:
                    inputs.append(self._input(spec, chunk, row))
                    positions.append(start + offset)
                except PredmeshError as err:
                    results[start + offset] = {"error": f"{err.code.name}: {err.message}"}
            if inputs:
                outcome = await self._call(spec, f"batch-{spec.job_id}-{chunk}-{start}", inputs)
                for position, value in zip(positions, outcome, strict=True):
                    results[position] = value
            start += step
        return results

    async def _turn(self) -> int:
        """Rows of the next call: the adaptive pace's (after its pause), at most `items_per_call`."""
        most = max(1, self._limits.items_per_call)
        items = await self._admission.background_turn()
        return min(items, most) if items > 0 else most

    @staticmethod
    def _input(spec: JobSpec, chunk: int, row: Row) -> PredictInput:
        entity = row.get(spec.entity_column)
        if entity is None or entity == "":
            raise InvalidArgument(f"no {spec.entity_column!r} value")
        try:
            context = batchfiles.row_context(row, spec.entity_column)
        except (TypeError, ValueError):
            raise InvalidArgument("a context value is neither a number, a string nor a bool") from None
        for name, value in context.items():
            check_context_value(name, value)
        return PredictInput(
            request_id=f"batch-{spec.job_id}-{chunk}",
            model=spec.model,
            version=spec.version,
            entity_id=str(entity),
            context=context,
            priority=int(Priority.BATCH),
        )

    async def _call(self, spec: JobSpec, request_id: str, inputs: list[PredictInput]) -> list[Row]:
        error: PredmeshError | None = None
        for attempt in range(max(1, self._limits.attempts)):
            if attempt:
                await asyncio.sleep(self._limits.backoff_s * 2 ** (attempt - 1))
            await self._admission.realtime_quiet(self._limits.yield_max_s)
            await self._admission.wait_for_room(Priority.BATCH)  # deferred, never refused
            started = time.monotonic()
            try:
                with self._admission.admit(Priority.BATCH, shed=False):
                    outs = await self._predictor.predict_batch(
                        request_id, spec.model, spec.version, inputs, Deadline.after(self._limits.call_timeout_s)
                    )
                self._admission.background_done(len(inputs), time.monotonic() - started)
                return [_result(o) for o in outs]
            except PredmeshError as err:
                error = err
                if err.code not in _RETRIABLE:
                    break
            finally:
                await self._pace(time.monotonic() - started)
        assert error is not None
        return [{"error": f"{error.code.name}: {error.message}"} for _ in inputs]

    async def _pace(self, busy_s: float) -> None:
        duty = self._limits.duty_cycle
        if 0 < duty < 1:
            await asyncio.sleep(busy_s * (1 - duty) / duty)


def _result(out: PredictOutput) -> Row:
    return {"score": out.score.score, "label": out.score.label, "version": out.model_version, "degraded": out.degraded}
