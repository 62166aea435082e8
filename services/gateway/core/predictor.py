"""The request path: validate, route, score in coalesced batches, answer, log, shadow.

`Predictor` is created once by the app and shared by all requests on one event loop. It
never blocks. A request is read top to bottom in `_score`:

1. routing gives each entity a serving version and an arm (or the request pins a version);
2. the rows join a coalesced batch for that model + version (`core/coalescer.py`): one
   GetFeatures and one Infer serve all concurrent requests, and the batch builds every
   member's answer (`core/scoring.py`); the request waits for its answer only until its own
   deadline;
3. a dependency failure (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED from features or
   inference, a malformed answer, an open circuit breaker, too little budget for inference)
   is answered from the request's own fallback chain (`core/fallback.py`, one batched call
   per step for all the failed members of a batch) with `degraded=True` and a reason;
   without a fallback chain the error reaches the caller. Caller errors (INVALID_ARGUMENT,
   NOT_FOUND) are never masked by fallbacks;
   With a `cache` policy on the model's route (`core/cache.py`), the rows are first looked up
   in the prediction cache, after assignment (the key holds the assigned version): hits are
   answered with `cached=True` (built by `build_outputs` like fresh answers), logged and
   counted per arm here; only the misses are scored, and their non-degraded answers are stored.
   The shared level's lookups and stores of concurrent requests are batched per window by the
   cache itself (one Redis round trip each). A lookup gets at most `CACHE_SHARE` of what is
   left of the request's deadline: a shared level slower than that is a miss ("late"), and the
   rest of the budget still scores the request. Without a policy nothing of this runs;
4. the batch's answers are logged to a non-blocking sink in one call (`core/outputs.py`) and
   a sample of them is handed to the shadow runner (`core/shadow.py`), which scores it
   later, in background.

`drain()` at shutdown flushes and waits for the batches and the shadow work it owns.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from prometheus_client import Counter, Histogram

from predmesh.common import telemetry
from predmesh.common.deadline import Deadline
from services.gateway.core.breaker import BreakerRegistry
from services.gateway.core.cache import CachedAnswer, CacheKey, CachePolicy, PredictionCache, cache_key
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.coalescer import Coalescer
from services.gateway.core.deps import PathDeps
from services.gateway.core.fallback import FallbackChain
from services.gateway.core.limits import PredictorLimits
from services.gateway.core.outputs import NO_TRACE, LogEntry, PredictionLog, TraceIds, build_outputs
from services.gateway.core.ports import FeatureSource, ModelRunner, PredictionSink
from services.gateway.core.priority import Priority, most_urgent
from services.gateway.core.routing import EMPTY, ModelRoute, RoutingTable
from services.gateway.core.scoring import BatchScorer, LaneKey, ScoreJob
from services.gateway.core.shadow import ShadowRunner
from services.gateway.core.types import Arm, PredictInput, PredictOutput, Timings
from services.gateway.core.validation import check_batch, check_input
from services.gateway.errors import DeadlineExceeded, PredmeshError
from services.gateway.metrics import GatewayMetrics

CACHE_SHARE = 0.5  # of the request's remaining deadline, the most its shared-cache lookup may take

__all__ = ["Predictor", "PredictorLimits", "in_request_order"]


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
        clock: Callable[[], float] = time.monotonic,
        shadow_rng: random.Random | None = None,
        cache: PredictionCache | None = None,
    ) -> None:
        self.metrics = metrics = metrics or GatewayMetrics()
        breakers = breakers or BreakerRegistry(failure_threshold=5, reset_timeout_s=2.0)
        if breakers.on_state is None:
            breakers.on_state = lambda key, is_open: metrics.breaker_open.labels(key).set(1 if is_open else 0)
        prediction_log = PredictionLog(sink, limits.log_features_sample, metrics)
        deps = PathDeps(features, models, catalog, breakers, limits, metrics, prediction_log, clock)
        self._shadow = ShadowRunner(deps, shadow_rng)
        scorer = BatchScorer(deps, FallbackChain(deps), self._shadow)
        # One lane per model + version + class (real-time or background): a real-time request never
        # waits for a slot held by batch-job or async batches of the same model (the orchestrator's
        # batcher then serves real-time rows first, see services/inference).
        self._batches: Coalescer[LaneKey, ScoreJob] = Coalescer(scorer.run, limits.primary_window)
        self._limits = limits
        self._routing = routing
        self._clock = clock
        self._latency_children: dict[tuple[str, str], Histogram] = {}
        self._counters: dict[tuple[Counter, tuple[str, ...]], Counter] = {}
        self._cache = cache  # None: no cache level at all (routes' `cache` policies are ignored)
        self._catalog = catalog
        self._log = prediction_log

    # -- configuration -----------------------------------------------------
    @property
    def routing(self) -> RoutingTable:
        return self._routing

    def set_routing(self, table: RoutingTable) -> None:
        """Swap the routing table; requests already routed keep their choice. The new revision is
        part of every cache key, so no answer cached under the old table is served again."""
        if self._cache is not None and table.revision != self._routing.revision:
            self._cache.clear()
        self._routing = table

    # -- public API ----------------------------------------------------------
    async def predict(self, item: PredictInput, deadline: Deadline) -> PredictOutput:
        check_input(item)
        started = self._clock()
        outs = await self._run(item.request_id, item.model, item.version, [item], deadline)
        self._latency(item.model, "Predict").observe(self._clock() - started)
        return outs[0]

    async def predict_batch(
        self, request_id: str, model: str, version: str, items: Sequence[PredictInput], deadline: Deadline
    ) -> list[PredictOutput]:
        check_batch(items, self._limits.max_batch_items)
        started = self._clock()
        outs = await self._run(request_id, model, version, items, deadline)
        self._latency(model, "PredictBatch").observe(self._clock() - started)
        return outs

    def _latency(self, model: str, method: str) -> Histogram:
        """The latency histogram's child for a model that answered, bound once (not per request)."""
        child = self._latency_children.get((model, method))
        if child is None:
            child = self._latency_children[(model, method)] = self.metrics.latency.labels(model, method)
        return child

    def _counter(self, metric: Counter, *labels: str) -> Counter:
        """A counter's child bound once per label set (cached path: per request)."""
        key = (metric, labels)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = metric.labels(*labels)
        return child

    async def drain(self, timeout_s: float) -> None:
        """Finish queued and running batches, then shadow work, within `timeout_s` each."""
        await self._batches.drain(timeout_s)
        await self._shadow.drain(timeout_s)
        if self._cache is not None:
            await self._cache.drain(timeout_s)

    # -- request path --------------------------------------------------------
    async def _run(
        self, request_id: str, model: str, version: str, items: Sequence[PredictInput], deadline: Deadline
    ) -> list[PredictOutput]:
        started = self._clock()
        request_id = request_id or uuid.uuid4().hex
        table = self._routing
        route = table.get(model)
        policy = route.cache if self._cache is not None else None
        if len(items) == 1:  # every Predict: one item, one job (what the grouping below gives, without it)
            item = items[0]
            ver, arm = (version, Arm.PINNED) if version else route.assign(item.entity_id)
            if policy is None:
                return await self._score(route, ver, arm, [item], [request_id], deadline, started)
            return await self._score_cached(
                route, policy, table.revision, ver, arm, [item], [request_id], deadline, started
            )
        groups: dict[tuple[str, Arm], list[int]] = {}
        for idx, item in enumerate(items):
            key = (version, Arm.PINNED) if version else route.assign(item.entity_id)
            groups.setdefault(key, []).append(idx)
        size = max(1, self._limits.coalesce_max_rows)
        chunks = [
            (ver, arm, idxs[start : start + size])
            for (ver, arm), idxs in groups.items()
            for start in range(0, len(idxs), size)
        ]

        def ids(positions: list[int]) -> list[str]:
            return [f"{request_id}/{pos}" for pos in positions] if len(items) > 1 else [request_id]

        jobs = [
            self._score(route, ver, arm, [items[i] for i in idxs], ids(idxs), deadline, started)
            if policy is None
            else self._score_cached(
                route, policy, table.revision, ver, arm, [items[i] for i in idxs], ids(idxs), deadline, started
            )
            for ver, arm, idxs in chunks
        ]
        results = await asyncio.gather(*jobs) if len(jobs) > 1 else [await jobs[0]]
        return in_request_order(len(items), zip((idxs for _, _, idxs in chunks), results, strict=True))

    async def _score_cached(
        self,
        route: ModelRoute,
        policy: CachePolicy,
        revision: str,
        version: str,
        arm: Arm,
        items: list[PredictInput],
        ids: list[str],
        deadline: Deadline,
        started: float,
    ) -> list[PredictOutput]:
        """Cached answers for the hits, `_score` for the misses; stores the fresh non-degraded ones."""
        cache = cast(PredictionCache, self._cache)
        try:  # the serving version ("" = the orchestrator's default) and entity type, from the catalog's TTL cache
            desc = await self._catalog.describe(route.model, version, deadline.budget(what="model lookup"))
        except PredmeshError:  # the scoring path answers this failure as it always does
            return await self._score(route, version, arm, items, ids, deadline, started)
        keys = [cache_key(route.model, desc.version, revision, desc.entity_type, it) for it in items]
        found = await cache.lookup(keys, deadline.remaining() * CACHE_SHARE)
        results: list[PredictOutput | None] = [None] * len(items)
        for level in found.levels:
            self._counter(self.metrics.cache_lookups, route.model, level).inc()
        hits = [i for i, answer in enumerate(found.answers) if answer is not None]
        if hits:
            answers = [cast(CachedAnswer, found.answers[i]) for i in hits]
            served = build_outputs(
                [ids[i] for i in hits],
                [items[i] for i in hits],
                route.model,
                desc.version,
                [a.score for a in answers],
                arm,
                Timings(total_ms=(self._clock() - started) * 1e3),
                [a.defaulted_features for a in answers],
                missing=[a.missing_features for a in answers],
                stale=[a.stale_features for a in answers],
                cached=True,
            )
            for i, out in zip(hits, served, strict=True):
                results[i] = out
            self._log.emit_many([LogEntry(served, (), [()] * len(served), TraceIds.current())])
            self._counter(self.metrics.predictions, route.model, desc.version, arm).inc(len(hits))
        misses = [i for i, answer in enumerate(found.answers) if answer is None]
        if misses:
            fresh = await self._score(
                route, version, arm, [items[i] for i in misses], [ids[i] for i in misses], deadline, started
            )
            keep: list[tuple[int, CacheKey, CachedAnswer, float]] = []
            for i, out in zip(misses, fresh, strict=True):
                results[i] = out
                if not out.degraded and out.model_version == desc.version and out.arm == arm:
                    answer = CachedAnswer(out.score, out.defaulted_features, out.missing_features, out.stale_features)
                    keep.append((i, keys[i], answer, policy.ttl_for(items[i].context)))
            await cache.store(found, keep)
        return cast(list[PredictOutput], results)

    async def _score(
        self,
        route: ModelRoute,
        version: str,
        arm: Arm,
        items: list[PredictInput],
        ids: list[str],
        deadline: Deadline,
        started: float,
    ) -> list[PredictOutput]:
        """This request's answers from a coalesced batch; waits until its own deadline at most."""
        remaining = deadline.remaining()
        if remaining <= 0:
            raise DeadlineExceeded("deadline exceeded before scoring")
        traced = telemetry.tracing_enabled()
        queued = telemetry.enqueue_trace() if traced else None
        future: asyncio.Future[list[PredictOutput]] = asyncio.get_running_loop().create_future()
        trace_ids = TraceIds.current() if traced else NO_TRACE
        job = ScoreJob(route, arm, items, ids, deadline, started, future, self._clock(), trace_ids, queued)
        background = most_urgent(item.priority for item in items) > Priority.REALTIME
        self._batches.submit(LaneKey(route.model, version, background), job)
        # The request's own deadline ends its wait (the batch goes on for the others); a timer
        # on the future costs less per request than asyncio.wait_for's extra waiter.
        timer = future.get_loop().call_later(
            remaining, job.fail, DeadlineExceeded("deadline exceeded in a batched call")
        )
        try:
            return await future
        finally:
            timer.cancel()


def in_request_order(n: int, parts: Iterable[tuple[Sequence[int], Sequence[PredictOutput]]]) -> list[PredictOutput]:
    """Place each part's outputs at its positions; every position must be answered exactly once."""
    slots: list[PredictOutput | None] = [None] * n
    for positions, outputs in parts:
        for pos, out in zip(positions, outputs, strict=True):
            slots[pos] = out
    missing = [pos for pos, out in enumerate(slots) if out is None]
    assert not missing, f"no answer for items {missing}"
    return cast(list[PredictOutput], slots)
