"""The prediction cache on a real Redis: hit, shared by replicas, invalidated by the ingestion
service's write of the entity and by a routing change, TTL rules, degraded answers not cached,
concurrent lookups batched (one MGET) and stores batched (one pipeline).

The features service and the orchestrator are the gateway's small fakes: what matters here is
the real Redis level and the real ingestion writer (`RedisWriter`, the code the ingest loop runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis

from predmesh.common.deadline import Deadline
from services.gateway.core.cache import PredictionCache
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.routing import parse_routing
from services.gateway.core.types import PredictInput, Scalar
from services.gateway.transport.cache_store import ENTRY_PREFIX
from services.gateway.transport.cache_store_cluster import open_shared_cache
from services.ingest.core.gates import Accepted
from services.ingest.core.writer import RedisWriter
from tests.gateway.fakes import FakeFeatures, FakeModels, ListSink

LIMITS = PredictorLimits(features_timeout_s=0.5, inference_timeout_s=0.5, max_batch_items=4)
POLICY = {
    "ttl_s": 60,
    "rules": [{"when": {"amount": {"gt": 900}}, "ttl_s": 0}, {"when": {"channel": "web"}, "ttl_s": 5}],
}
FALLBACK = [{"type": "constant", "score": 0.04, "label": "legit"}]


def routing(revision: str, **extra: Any) -> Any:
    return parse_routing({"models": {"fraud": {"cache": POLICY, **extra}}}, revision)


def item(entity: str = "u1", amount: float = 250.0, **ctx: Scalar) -> PredictInput:
    return PredictInput("r1", "fraud", "", entity, {"amount": amount, **ctx})


class Replica:
    """One gateway replica: its own predictor, fakes and in-process level, the shared Redis level
    (one Redis or a Redis Cluster, by the URL)."""

    def __init__(
        self,
        url: str,
        models: FakeModels | None = None,
        revision: str = "r1",
        on_error: Callable[[str], None] | None = None,
        **route: Any,
    ) -> None:
        self.models = models or FakeModels()
        self.sink = ListSink()
        self.shared = open_shared_cache(url, 1.0, on_error)  # one Redis, or a Redis Cluster (redis+cluster://)
        self.cache = PredictionCache(100, self.shared)
        self.predictor = Predictor(
            FakeFeatures(), self.models, ModelCatalog(self.models, 60.0), self.sink, LIMITS, cache=self.cache
        )
        self.predictor.set_routing(routing(revision, **route))
        self.task: asyncio.Task[None] | None = None

    async def subscribe(self) -> None:
        ready = asyncio.Event()
        self.task = asyncio.create_task(
            self.shared.run_invalidations(self.cache.invalidate_entity, self.cache.clear, ready)
        )
        await asyncio.wait_for(ready.wait(), 5.0)

    async def predict(self, it: PredictInput) -> Any:
        # A lookup may take half of what is left (then it is a late miss): 2 s here, room for a
        # cluster window that waits out a dead master's bounded fallback (the 1 s timeout above).
        return await self.predictor.predict(it, Deadline.after(4.0))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.shared.close()


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[Callable[..., Replica]]:
    made: list[Replica] = []

    def make(**kwargs: Any) -> Replica:
        made.append(Replica(redis_url, **kwargs))
        return made[-1]

    yield make
    for rep in made:
        await rep.close()


async def wait_until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - polling the cache size
            await asyncio.sleep(0.01)


def ingest(url: str, entity_id: str) -> None:
    """Write one event through the ingestion service's writer (what its consumer loop calls)."""
    client = redis.Redis.from_url(url)
    try:
        assert RedisWriter(client).write([Accepted("user", entity_id, 1_700_000_000_000, {"avg_amount_30d": "1"})]) == [
            True
        ]
    finally:
        client.close()


async def test_hit_then_ingest_invalidation_then_routing_change(
    redis_url: str, replicas: Callable[..., Replica]
) -> None:
    a = replicas()
    await a.subscribe()
    first = await a.predict(item())
    second = await a.predict(item())
    assert (first.cached, second.cached) == (False, True)
    assert second.score == first.score and second.model_version == first.model_version == "2"
    assert len(a.models.infer_calls) == 1  # the orchestrator was called once
    # Still logged (one record per request, cached=true) and counted per arm.
    assert [r.cached for r in a.sink.records] == [False, True]
    assert a.predictor.metrics.predictions.labels("fraud", "2", "stable")._value.get() == 2
    assert a.predictor.metrics.cache_lookups.labels("fraud", "local")._value.get() == 1

    # Another replica: its in-process level is empty, the shared Redis level answers.
    b = replicas()
    shared_hit = await b.predict(item())
    assert shared_hit.cached and b.models.infer_calls == []
    assert b.predictor.metrics.cache_lookups.labels("fraud", "shared")._value.get() == 1

    # Other entities and other contexts are other keys.
    assert not (await a.predict(item("u2"))).cached
    assert not (await a.predict(item(amount=251.0))).cached

    # The ingestion service writes u1: replica a drops its in-process entry (published message) ...
    ingest(redis_url, "u1")
    await wait_until(lambda: len(a.cache) == 1)  # u1 (two contexts) gone, u2 kept
    calls = len(a.models.infer_calls)
    after_ingest = await a.predict(item())
    assert not after_ingest.cached and len(a.models.infer_calls) == calls + 1
    # (the shared entry was not served either: its generation changed; see the next test)
    # u2 was not written: still cached.
    assert (await a.predict(item("u2"))).cached

    # A routing change (new revision) invalidates everything, on both levels.
    assert (await a.predict(item())).cached
    a.predictor.set_routing(routing("r2"))
    d = replicas(revision="r2")
    assert not (await a.predict(item())).cached
    assert not (await d.predict(item("u2"))).cached
    assert (await a.predict(item())).cached


async def test_ingest_invalidation_reaches_the_shared_level(redis_url: str, replicas: Callable[..., Replica]) -> None:
    a = replicas()
    await a.predict(item())
    ingest(redis_url, "u1")
    b = replicas()  # no subscription, empty in-process level: only the generation can say "stale"
    out = await b.predict(item())
    assert not out.cached and len(b.models.infer_calls) == 1
    assert (await replicas().predict(item())).cached  # b stored the fresh answer with the new generation


async def test_ttl_rules(redis_url: str, replicas: Callable[..., Replica]) -> None:
    a = replicas()
    client = redis.Redis.from_url(redis_url)
    try:
        await a.predict(item("base"))
        await a.predict(item("web", channel="web"))
        await a.predict(item("big", amount=950.0))
        assert not (await a.predict(item("big", amount=950.0))).cached  # rule ttl_s 0: never cached
        assert (await a.predict(item("web", channel="web"))).cached
        ttls = {}
        for key in client.scan_iter(ENTRY_PREFIX + "*"):
            ttls[key] = client.pttl(key)
        assert len(ttls) == 2  # base and web; not big
        assert sorted(ttls.values())[0] <= 5_000 < sorted(ttls.values())[1] <= 60_000
    finally:
        client.close()


async def test_degraded_answer_is_not_cached(redis_url: str, replicas: Callable[..., Replica]) -> None:
    a = replicas(models=FakeModels(failing={"fraud"}), fallback=FALLBACK)
    first = await a.predict(item())
    second = await a.predict(item())
    assert first.degraded and second.degraded and not second.cached
    assert len(a.models.infer_calls) == 2
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(ENTRY_PREFIX + "*")) == []
    finally:
        client.close()
    assert len(a.cache) == 0


async def test_concurrent_misses_make_one_mget_and_one_store_round_trip(
    redis_url: str, replicas: Callable[..., Replica]
) -> None:
    a = replicas()
    client = redis.Redis.from_url(redis_url)
    try:
        client.config_resetstat()
        outs = await asyncio.gather(*(a.predict(item(f"c{i}")) for i in range(8)))
        stats = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in client.info("commandstats").items()}
    finally:
        client.close()
    assert not any(o.cached for o in outs) and len(a.models.infer_calls) == 1
    # The 8 lookups (entries + generations) in one MGET; the 8 stores in one pipeline; no GET per key.
    assert {k: v for k, v in stats.items() if k in ("mget", "get", "set")} == {"mget": 1, "set": 8}
    b = replicas()  # another replica: all 8 answered by its shared level, again from one MGET
    assert all(o.cached for o in await asyncio.gather(*(b.predict(item(f"c{i}")) for i in range(8))))
    assert b.models.infer_calls == []
