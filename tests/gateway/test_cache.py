"""The prediction cache's core with small fakes: policy parsing, TTL rules, LRU bound, keys,
invalidation, the request path without a policy (nothing of the cache runs), and the shared level's
calls batched across concurrent requests (one lookup and one store per window)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from predmesh.common.deadline import Deadline
from services.gateway.core.cache import (
    CachedAnswer,
    CacheKey,
    Lookup,
    PredictionCache,
    SharedEntry,
    SharedHit,
    cache_key,
    parse_cache_policy,
)
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.routing import RoutingError, parse_routing
from services.gateway.core.types import PredictInput, Scalar, Score
from tests.gateway.fakes import FakeFeatures, FakeModels, ListSink

LIMITS = PredictorLimits(features_timeout_s=0.5, inference_timeout_s=0.5, max_batch_items=4)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def item(entity: str = "u1", **ctx: Scalar) -> PredictInput:
    return PredictInput("r1", "fraud", "", entity, {"amount": 250.0, **ctx})


def test_ttl_rules_first_match_wins() -> None:
    policy = parse_cache_policy(
        {
            "ttl_s": 60,
            "rules": [
                {"when": {"amount": {"gt": 1000}}, "ttl_s": 2},
                {"when": {"channel": "web", "amount": {"lte": 10}}, "ttl_s": 0},
                {"when": {"vip": True}, "ttl_s": 600},
            ],
        },
        "c",
    )
    assert policy.ttl_for({"amount": 5000.0}) == 2
    assert policy.ttl_for({"amount": 5.0, "channel": "web"}) == 0
    assert policy.ttl_for({"amount": 5.0, "channel": "app"}) == 60
    assert policy.ttl_for({"amount": "5000"}) == 60  # a string never compares as a number
    assert policy.ttl_for({"vip": True}) == 600
    assert policy.ttl_for({"vip": 1}) == 60  # 1 is not True


@pytest.mark.parametrize(
    "raw",
    [
        {"rules": []},
        {"ttl_s": -1},
        {"ttl_s": True},
        {"ttl_s": 5, "extra": 1},
        {"ttl_s": 5, "rules": [{"when": {}, "ttl_s": 1}]},
        {"ttl_s": 5, "rules": [{"when": {"a": {"between": 1}}, "ttl_s": 1}]},
        {"ttl_s": 5, "rules": [{"when": {"a": {"gt": "x"}}, "ttl_s": 1}]},
        {"ttl_s": 5, "rules": [{"when": {"a": [1]}, "ttl_s": 1}]},
        {"ttl_s": 5, "rules": [{"when": {"a": 1}}]},
    ],
)
def test_bad_policy_is_a_routing_error(raw: object) -> None:
    with pytest.raises(RoutingError, match=r"models\.fraud\.cache"):
        parse_routing({"models": {"fraud": {"cache": raw}}})


def test_no_cache_key_means_no_policy() -> None:
    assert parse_routing({"models": {"fraud": {}}}).get("fraud").cache is None


def test_key_covers_version_revision_entities_and_context() -> None:
    base = cache_key("fraud", "2", "r1", "user", item())
    assert base == cache_key("fraud", "2", "r1", "user", item())
    others = [
        cache_key("fraud", "3", "r1", "user", item()),
        cache_key("fraud", "2", "r2", "user", item()),
        cache_key("fraud", "2", "r1", "user", item("u2")),
        cache_key("fraud", "2", "r1", "user", item(channel="web")),
        cache_key(
            "fraud", "2", "r1", "user", PredictInput("r", "fraud", "", "u1", {"amount": 250.0}, {"merchant": "m1"})
        ),
    ]
    assert len({k.text for k in [base, *others]}) == 6
    assert others[-1].entities == (("user", "u1"), ("merchant", "m1"))


async def test_local_level_ttl_lru_and_entity_invalidation() -> None:
    clock = Clock()
    cache = PredictionCache(2, clock=clock)
    answer = CachedAnswer(Score(0.5))
    k1, k2, k3 = (cache_key("fraud", "2", "r", "user", item(e)) for e in ("u1", "u2", "u3"))
    found = await cache.lookup([k1, k2])
    assert found.answers == [None, None]
    await cache.store(found, [(0, k1, answer, 10.0), (1, k2, answer, 60.0)])
    assert (await cache.lookup([k1, k2])).levels == ["local", "local"]
    clock.now += 20  # past k1's TTL only
    assert (await cache.lookup([k1, k2])).levels == ["miss", "local"]
    await cache.store(await cache.lookup([k3]), [(0, k3, answer, 60.0)])
    await cache.store(await cache.lookup([k1]), [(0, k1, answer, 60.0)])  # evicts the least recently used (k2)
    assert len(cache) == 2 and (await cache.lookup([k2])).levels == ["miss"]
    cache.invalidate_entity("user", "u3")
    assert (await cache.lookup([k3, k1])).levels == ["miss", "local"]


async def test_an_answer_looked_up_before_an_invalidation_is_not_stored() -> None:
    cache = PredictionCache(10)
    k1 = cache_key("fraud", "2", "r", "user", item())
    found = await cache.lookup([k1])
    cache.invalidate_entity("user", "u1")  # the entity was written while the request was scored
    await cache.store(found, [(0, k1, CachedAnswer(Score(0.5)), 60.0)])
    assert len(cache) == 0


class SpyCache(PredictionCache):
    def __init__(self) -> None:
        super().__init__(10)
        self.lookups = 0

    async def lookup(self, keys: Sequence[CacheKey], budget_s: float | None = None) -> Lookup:
        self.lookups += 1
        return await super().lookup(keys, budget_s)


async def test_without_a_policy_the_cache_is_never_touched() -> None:
    models, sink, cache = FakeModels(), ListSink(), SpyCache()
    predictor = Predictor(FakeFeatures(), models, ModelCatalog(models, 60.0), sink, LIMITS, cache=cache)
    predictor.set_routing(parse_routing({"models": {"fraud": {"shadow_ratio": 1.0}}}, "r1"))
    for _ in range(2):
        out = await predictor.predict(item(), Deadline.after(1.0))
        assert not out.cached
    assert cache.lookups == 0 and len(cache) == 0 and len(models.infer_calls) == 2
    assert [r.cached for r in sink.records] == [False, False]


async def test_canary_assignment_comes_first_and_the_arm_is_kept() -> None:
    models, cache = FakeModels(), PredictionCache(100)
    predictor = Predictor(FakeFeatures(), models, ModelCatalog(models, 60.0), ListSink(), LIMITS, cache=cache)
    versions = [{"version": "1", "weight": 50}, {"version": "3", "weight": 50}]
    predictor.set_routing(parse_routing({"models": {"fraud": {"versions": versions, "cache": {"ttl_s": 60}}}}, "r"))
    firsts = [await predictor.predict(item(f"e{i}"), Deadline.after(1.0)) for i in range(20)]
    seconds = [await predictor.predict(item(f"e{i}"), Deadline.after(1.0)) for i in range(20)]
    assert {o.arm for o in firsts} == {"stable", "canary"}
    assert all(s.cached for s in seconds)
    assert [(s.model_version, s.arm, s.score) for s in seconds] == [(f.model_version, f.arm, f.score) for f in firsts]
    assert len(models.infer_calls) == 20


async def test_batch_scores_only_the_misses() -> None:
    models, cache = FakeModels(), PredictionCache(100)
    predictor = Predictor(FakeFeatures(), models, ModelCatalog(models, 60.0), ListSink(), LIMITS, cache=cache)
    predictor.set_routing(parse_routing({"models": {"fraud": {"cache": {"ttl_s": 60}}}}, "r"))
    await predictor.predict(item("u1"), Deadline.after(1.0))
    outs = await predictor.predict_batch("b", "fraud", "", [item("u1"), item("u2")], Deadline.after(1.0))
    assert [o.cached for o in outs] == [True, False]
    assert [o.request_id for o in outs] == ["b/0", "b/1"]
    assert models.infer_calls[-1] == ("fraud", "2", 1)


class CountingShared:
    """A shared level in memory that records each batched call (keys / entries per call)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[CachedAnswer, tuple[int, ...]]] = {}
        self.gets: list[int] = []
        self.puts: list[int] = []

    async def get_many(self, keys: Sequence[CacheKey]) -> list[SharedHit]:
        self.gets.append(len(keys))
        await asyncio.sleep(0)  # a round trip: others may queue meanwhile
        out = []
        for key in keys:
            got = self.entries.get(key.text)
            out.append(SharedHit(got[0] if got else None, (0,) * len(key.entities), 60.0 if got else 0.0))
        return out

    async def put_many(self, entries: Sequence[SharedEntry]) -> None:
        self.puts.append(len(entries))
        await asyncio.sleep(0)
        for key, answer, gens, _ in entries:
            self.entries[key.text] = (answer, gens)


async def test_concurrent_requests_share_one_shared_lookup_and_one_store() -> None:
    shared = CountingShared()
    models = FakeModels()
    cache = PredictionCache(100, shared)
    predictor = Predictor(FakeFeatures(), models, ModelCatalog(models, 60.0), ListSink(), LIMITS, cache=cache)
    predictor.set_routing(parse_routing({"models": {"fraud": {"cache": {"ttl_s": 60}}}}, "r"))
    outs = await asyncio.gather(*(predictor.predict(item(f"e{i}"), Deadline.after(1.0)) for i in range(8)))
    assert not any(o.cached for o in outs)
    assert (shared.gets, shared.puts) == ([8], [8])  # one pipelined lookup and one store for the 8 requests
    assert len(models.infer_calls) == 1
    # Another replica (empty in-process level): 8 concurrent hits from one shared lookup, built like fresh answers.
    other = Predictor(
        FakeFeatures(), models, ModelCatalog(models, 60.0), ListSink(), LIMITS, cache=PredictionCache(100, shared)
    )
    other.set_routing(parse_routing({"models": {"fraud": {"cache": {"ttl_s": 60}}}}, "r"))
    hits = await asyncio.gather(*(other.predict(item(f"e{i}"), Deadline.after(1.0)) for i in range(8)))
    assert all(h.cached for h in hits) and shared.gets == [8, 8] and shared.puts == [8]
    assert [(h.entity_id, h.score, h.model_version, h.arm) for h in hits] == [
        (o.entity_id, o.score, o.model_version, o.arm) for o in outs
    ]
    await predictor.drain(1.0)
    await other.drain(1.0)


class FailingShared(CountingShared):
    async def get_many(self, keys: Sequence[CacheKey]) -> list[SharedHit]:
        raise RuntimeError("bug in the shared level")


async def test_a_failing_batched_lookup_is_a_miss_not_an_error() -> None:
    models = FakeModels()
    cache = PredictionCache(100, FailingShared())
    predictor = Predictor(FakeFeatures(), models, ModelCatalog(models, 60.0), ListSink(), LIMITS, cache=cache)
    predictor.set_routing(parse_routing({"models": {"fraud": {"cache": {"ttl_s": 60}}}}, "r"))
    outs = await asyncio.gather(*(predictor.predict(item(f"e{i}"), Deadline.after(1.0)) for i in range(3)))
    assert [o.cached for o in outs] == [False] * 3 and len(models.infer_calls) == 1
    assert (await predictor.predict(item("e0"), Deadline.after(1.0))).cached  # the in-process level kept them


class StalledShared(CountingShared):
    """A shared level whose lookups never answer (a stalled Redis, its timeout longer than the deadline)."""

    async def get_many(self, keys: Sequence[CacheKey]) -> list[SharedHit]:
        self.gets.append(len(keys))
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_stalled_shared_level_costs_the_cache_not_the_answer() -> None:
    models, shared = FakeModels(), StalledShared()
    predictor = Predictor(
        FakeFeatures(), models, ModelCatalog(models, 60.0), ListSink(), LIMITS, cache=PredictionCache(100, shared)
    )
    predictor.set_routing(parse_routing({"models": {"fraud": {"cache": {"ttl_s": 60}}}}, "r"))
    deadline = Deadline.after(0.4)
    outs = await asyncio.gather(*(predictor.predict(item(f"e{i}"), deadline) for i in range(3)))
    # Scored within the deadline after the lookup's share of it (0.2 s) ran out: not degraded, not cached.
    assert [(o.cached, o.degraded) for o in outs] == [(False, False)] * 3 and deadline.remaining() > 0
    assert shared.gets == [3] and len(models.infer_calls) == 1
    assert shared.puts == []  # no generations were read: nothing the shared level could ever serve is stored
    assert predictor.metrics.cache_lookups.labels("fraud", "late")._value.get() == 3
    assert (await predictor.predict(item("e0"), Deadline.after(0.4))).cached  # the in-process level kept it
    await predictor.drain(0.1)
