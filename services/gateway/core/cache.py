"""The prediction cache: per-model policy, keys, and the two levels (in-process LRU + shared store).

Off unless a model's route has a `cache` policy (routing `models.<m>.cache`):

    cache:
      ttl_s: 30                                   # base TTL
      rules:                                      # first matching rule wins; ttl_s 0 = never cache
        - {when: {channel: "web"}, ttl_s: 10}     # context feature equals a value
        - {when: {amount: {gt: 1000}}, ttl_s: 2}  # or compares (gt, gte, lt, lte); all conditions must hold

Key: model, the serving version (after canary assignment or the pin, resolved by the catalog),
the routing revision, the primary entity (type + id), the other entities (`entities` map) and
a canonical hash of the context. So a routing change or a new served version never reads an
old entry (wholesale invalidation; old entries age out by TTL and LRU eviction).

Per-entity invalidation: the ingestion service bumps a generation counter per entity it writes
(`predmesh.common.predcache.generation_key`) and publishes the entity on its channel, in the same Redis
round trip as the write. A shared entry stores the generations read when its request was looked
up, and is valid only while they are unchanged (correct even when a gateway missed a message);
each gateway drops its in-process entries of a published entity (`invalidate_entity`), and
clears its whole in-process level when its subscription (re)connects. Without a shared store the
cache has the in-process level only, and ingested writes reach it only through the TTL.

Batched per window: the shared level is called through a `Coalescer` (`core/coalescer.py`) with
one lane for lookups and one for stores, so all the lookups that concurrent requests make in one
window (the same event loop turn when the lane is idle; while a call is in flight, what arrives
meanwhile) leave as ONE pipelined `get_many`, and their stores as one `put_many`: a miss no
longer costs each request its own Redis round trips. The in-process level is read per request,
without waiting. Each request still gets its own answers; a failed or cancelled shared call is
a miss (lookup) or nothing stored (store), never an error.

Degraded answers are never stored. One `PredictionCache` per gateway, used from one event loop;
`drain()` at shutdown waits for the shared calls in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import operator
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from services.gateway.core.coalescer import Coalescer, Window
from services.gateway.core.types import PredictInput, Scalar, Score

T = TypeVar("T")
R = TypeVar("R")

_OPS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
# The shared level's window: what arrives while one call of a lane is in flight leaves with the next.
SHARED_WINDOW = Window(max_rows=512, max_wait_s=0.001, flush_when_idle=True, max_inflight=1)


class CachePolicyError(ValueError):
    """A `cache` policy is invalid; the message names the offending entry."""


@dataclass(frozen=True, slots=True)
class TtlRule:
    when: tuple[tuple[str, Any], ...]  # (feature, value or {op: number})
    ttl_s: float

    def matches(self, context: Mapping[str, Scalar]) -> bool:
        return all(_holds(context.get(name), cond) for name, cond in self.when)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    ttl_s: float
    rules: tuple[TtlRule, ...] = ()

    def ttl_for(self, context: Mapping[str, Scalar]) -> float:
        for rule in self.rules:
            if rule.matches(context):
                return rule.ttl_s
        return self.ttl_s


def _holds(value: Scalar | None, cond: Any) -> bool:
    if not isinstance(cond, dict):
        return value is not None and isinstance(value, bool) == isinstance(cond, bool) and value == cond
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return all(_OPS[op](value, bound) for op, bound in cond.items())


def _ttl(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 86_400:
        raise CachePolicyError(f"{where}: ttl_s must be a number of seconds in [0, 86400]")
    return float(raw)


def parse_cache_policy(raw: Any, where: str) -> CachePolicy:
    """Validate a route's `cache` entry; raises CachePolicyError naming the bad entry."""
    if not isinstance(raw, dict) or set(raw) - {"ttl_s", "rules"} or "ttl_s" not in raw:
        raise CachePolicyError(f"{where}: expected {{ttl_s, rules?}}")
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list):
        raise CachePolicyError(f"{where}.rules: expected a list")
    rules: list[TtlRule] = []
    for i, entry in enumerate(rules_raw):
        here = f"{where}.rules[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"when", "ttl_s"}:
            raise CachePolicyError(f"{here}: expected {{when, ttl_s}}")
        when = entry["when"]
        if not isinstance(when, dict) or not when:
            raise CachePolicyError(f"{here}.when: expected a non-empty mapping of context feature -> condition")
        for name, cond in when.items():
            if isinstance(cond, dict):
                numeric = all(not isinstance(v, bool) and isinstance(v, int | float) for v in cond.values())
                if not cond or set(cond) - set(_OPS) or not numeric:
                    raise CachePolicyError(f"{here}.when.{name}: expected {{gt|gte|lt|lte: number}}")
            elif not isinstance(cond, str | int | float | bool):
                raise CachePolicyError(f"{here}.when.{name}: expected a value or a comparison")
        rules.append(TtlRule(tuple(when.items()), _ttl(entry["ttl_s"], f"{here}.ttl_s")))
    return CachePolicy(_ttl(raw["ttl_s"], f"{where}.ttl_s"), tuple(rules))


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """What is stored: the scored answer (the serving fields of a `PredictOutput`)."""

    score: Score
    defaulted_features: tuple[str, ...] = ()
    missing_features: tuple[str, ...] = ()
    stale_features: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CacheKey:
    text: str
    entities: tuple[tuple[str, str], ...]  # (entity type, id): primary first


def cache_key(model: str, version: str, revision: str, entity_type: str, item: PredictInput) -> CacheKey:
    entities = ((entity_type, item.entity_id), *sorted(item.entities.items()))
    canonical = json.dumps(
        [model, version, revision, entities, sorted(item.context.items())], separators=(",", ":"), ensure_ascii=False
    )
    digest = hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()
    return CacheKey(f"{model}:{version}:{digest}", entities)


SharedEntry = tuple[CacheKey, CachedAnswer, tuple[int, ...], float]  # key, answer, generations, TTL (s)


@dataclass(frozen=True, slots=True)
class SharedHit:
    answer: CachedAnswer | None  # None: absent, expired or invalidated
    generations: tuple[int, ...]  # the entities' generations now (stored with a new entry)
    ttl_left_s: float = 0.0  # of a hit: how long the shared entry lives on


class SharedCache(Protocol):
    """The level shared by all gateway replicas (Redis in transport/cache_store.py).

    Implementations never raise: a failing store answers misses (and stores nothing).
    """

    async def get_many(self, keys: Sequence[CacheKey]) -> list[SharedHit]: ...

    async def put_many(self, entries: Sequence[SharedEntry]) -> None: ...


@dataclass(eq=False, slots=True)
class _Job(Generic[T, R]):
    """One request's shared lookups (keys -> one `SharedHit` each) or stores (entries -> None)."""

    items: Sequence[T]
    future: asyncio.Future[R]

    @property
    def rows(self) -> int:
        return max(1, len(self.items))

    def fail(self, err: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(err)


class _Late(Exception):
    """A lookup's budget ran out before its batch answered."""


_GetJob = _Job[CacheKey, list[SharedHit]]
_PutJob = _Job[SharedEntry, None]


class CoalescedShared:
    """A `SharedCache`'s calls from concurrent requests, sent together: one `get_many` per window
    for every request's lookups (`get_within`), one `put_many` for their stores (see the module
    docstring).

    Never raises: a failed or cancelled batched call answers misses / stores nothing.
    """

    def __init__(self, shared: SharedCache, window: Window = SHARED_WINDOW) -> None:
        self._shared = shared
        self._gets: Coalescer[str, _GetJob] = Coalescer(self._get_batch, window)
        self._puts: Coalescer[str, _PutJob] = Coalescer(self._put_batch, window)

    async def get_within(self, keys: Sequence[CacheKey], budget_s: float | None) -> list[SharedHit] | None:
        """The shared answers for `keys`, or None when their batch has not answered within
        `budget_s` (None: no bound but the store's own timeout); the batch goes on for others."""
        if not keys:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[SharedHit]] = loop.create_future()
        job = _Job(keys, future)
        self._gets.submit("get", job)
        # A timer on the job costs less per request than asyncio.wait_for's extra task.
        timer = None if budget_s is None else loop.call_later(max(0.0, budget_s), job.fail, _Late())
        try:
            return await future
        except _Late:
            return None
        except Exception:  # the batch failed (a bug, shutdown): misses
            return [SharedHit(None, ()) for _ in keys]
        finally:
            if timer is not None:
                timer.cancel()

    async def put_many(self, entries: Sequence[SharedEntry]) -> None:
        if not entries:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._puts.submit("put", _Job(entries, future))
        try:
            await future
        except Exception:  # nothing stored: the next request scores again
            return

    async def drain(self, timeout_s: float) -> None:
        await self._gets.drain(timeout_s)
        await self._puts.drain(timeout_s)

    async def _get_batch(self, _: str, jobs: list[_GetJob]) -> None:
        jobs = [job for job in jobs if not job.future.done()]
        hits = await self._shared.get_many([key for job in jobs for key in job.items]) if jobs else []
        offset = 0
        for job in jobs:
            part, offset = hits[offset : offset + len(job.items)], offset + len(job.items)
            if not job.future.done():
                job.future.set_result(part)

    async def _put_batch(self, _: str, jobs: list[_PutJob]) -> None:
        jobs = [job for job in jobs if not job.future.done()]
        if jobs:
            await self._shared.put_many([entry for job in jobs for entry in job.items])
        for job in jobs:
            if not job.future.done():
                job.future.set_result(None)


@dataclass(slots=True)
class Lookup:
    """One lookup's answers (None = miss) and what `store` needs to keep the result valid."""

    answers: list[CachedAnswer | None]
    levels: list[str]  # "local", "shared", "miss" or "late" (the shared level did not answer in time)
    generations: list[tuple[int, ...]] = field(default_factory=list)
    ttl_left_s: list[float] = field(default_factory=list)
    epoch: int = 0


class PredictionCache:
    def __init__(
        self,
        max_entries: int,
        shared: SharedCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        window: Window = SHARED_WINDOW,
    ) -> None:
        self._max = max(1, max_entries)
        self._batched = CoalescedShared(shared, window) if shared is not None else None
        self._clock = clock
        self._local: OrderedDict[str, tuple[float, CachedAnswer, tuple[tuple[str, str], ...]]] = OrderedDict()
        self._by_entity: dict[tuple[str, str], set[str]] = {}
        self._epoch = 0  # bumped on every invalidation: a lookup older than that stores nothing

    def __len__(self) -> int:
        return len(self._local)

    async def lookup(self, keys: Sequence[CacheKey], budget_s: float | None = None) -> Lookup:
        """The answers this replica or the shared level have for `keys`. The shared level gets
        `budget_s` at most (None: its own timeout): what it has not answered by then is a miss
        ("late"), so a slow shared level costs a request its cache, never its answer."""
        now = self._clock()
        answers: list[CachedAnswer | None] = []
        levels: list[str] = []
        for key in keys:
            hit = self._local.get(key.text)
            if hit is not None and hit[0] > now:
                self._local.move_to_end(key.text)
                answers.append(hit[1])
                levels.append("local")
            else:
                answers.append(None)
                levels.append("miss")
        result = Lookup(answers, levels, [()] * len(keys), [0.0] * len(keys), self._epoch)
        if self._batched is None or all(a is not None for a in answers):
            return result
        todo = [i for i, a in enumerate(answers) if a is None]
        shared = await self._batched.get_within([keys[i] for i in todo], budget_s)
        if shared is None:
            for i in todo:
                levels[i] = "late"
            return result  # no generations read: what is scored now is not stored in the shared level
        for i, got in zip(todo, shared, strict=True):
            result.generations[i] = got.generations
            if got.answer is not None:
                answers[i] = got.answer
                levels[i] = "shared"
                result.ttl_left_s[i] = got.ttl_left_s
                if result.epoch == self._epoch:  # keep it in this replica too, for what it has left
                    self._put_local(keys[i], got.answer, self._clock() + got.ttl_left_s)
        return result

    async def store(self, lookup: Lookup, entries: Sequence[tuple[int, CacheKey, CachedAnswer, float]]) -> None:
        """Keep fresh answers (position in the lookup, key, answer, TTL); skipped when an
        invalidation arrived since the lookup (the answer may predate the entity's write)."""
        if lookup.epoch != self._epoch:
            return
        entries = [e for e in entries if e[3] > 0]
        now = self._clock()
        for _, key, answer, ttl_s in entries:
            self._put_local(key, answer, now + ttl_s)
        # Only entries whose generations were read go to the shared level: one stored without
        # them could never hit (a lookup that failed or came late read none).
        shared = [(key, ans, lookup.generations[i], ttl) for i, key, ans, ttl in entries if lookup.generations[i]]
        if self._batched is not None and shared:
            await self._batched.put_many(shared)

    async def drain(self, timeout_s: float) -> None:
        """Wait (up to `timeout_s` per lane) for the shared level's batched calls in flight."""
        if self._batched is not None:
            await self._batched.drain(timeout_s)

    def _put_local(self, key: CacheKey, answer: CachedAnswer, expires: float) -> None:
        self._local[key.text] = (expires, answer, key.entities)
        self._local.move_to_end(key.text)
        for entity in key.entities:
            self._by_entity.setdefault(entity, set()).add(key.text)
        while len(self._local) > self._max:
            text, (_, _, entities) = self._local.popitem(last=False)
            self._unindex(text, entities)

    def _unindex(self, text: str, entities: tuple[tuple[str, str], ...]) -> None:
        for entity in entities:
            keys = self._by_entity.get(entity)
            if keys is not None:
                keys.discard(text)
                if not keys:
                    del self._by_entity[entity]

    def invalidate_entity(self, entity_type: str, entity_id: str) -> None:
        """Drop this replica's entries of an entity the ingestion service wrote."""
        self._epoch += 1
        for text in self._by_entity.pop((entity_type, entity_id), set()):
            hit = self._local.pop(text, None)
            if hit is not None:
                self._unindex(text, hit[2])

    def clear(self) -> None:
        """Drop the whole in-process level (routing swap, invalidation subscription reconnect)."""
        self._epoch += 1
        self._local.clear()
        self._by_entity.clear()
