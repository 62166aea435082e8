"""The prediction cache's shared level on Redis, and the per-entity invalidation subscription.

Layout (see core/cache.py for the design):
- `predmesh:pcache:e:<key>`: one JSON entry per cached answer, with the generations of its
  entities at lookup time and its wall-clock expiry; Redis expires it (PX) at its TTL;
- `predmesh:pcache:gen:<type>:<id>`: per-entity generation, INCR'd by the ingestion service
  when it writes that entity (absent = 0);
- channel `predmesh:pcache:invalidate`: the ingestion service publishes `[type, id]` (JSON) per
  written entity; `run_invalidations` hands them to the in-process level.

A lookup of many keys (the core batches a coalescing window's lookups into one call) is ONE
MGET of their entries and of their entities' generations (each entity once): one command, where
a pipeline of GETs costs the client ~60 µs per command (redis-py). MGET needs every key on one
node: on a Redis Cluster the same keys are read per master instead (`cache_store_cluster.py`,
which reuses the helpers below). A store is one pipelined round trip of SETs with their TTL
(`transaction=False`). Every Redis failure is a
miss (lookups) or a no-op (stores) and is counted; the request path never fails because of
the cache.

Lifecycle: created and closed by the app (`close`); `run_invalidations` runs as one task until
cancelled. Used from one event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from predmesh.common.predcache import INVALIDATE_CHANNEL, generation_key, parse_invalidation
from predmesh.common.redistls import RedisTls, ssl_options
from services.gateway.core.cache import CachedAnswer, CacheKey, SharedEntry, SharedHit
from services.gateway.core.types import Score

log = logging.getLogger(__name__)
ENTRY_PREFIX = "predmesh:pcache:e:"


def encode_entry(answer: CachedAnswer, generations: tuple[int, ...], expires_at_s: float) -> str:
    s = answer.score
    return json.dumps(
        {
            "s": s.score,
            "ss": list(s.scores),
            "l": s.label,
            "d": list(answer.defaulted_features),
            "m": list(answer.missing_features),
            "st": list(answer.stale_features),
            "g": list(generations),
            "x": expires_at_s,
        },
        separators=(",", ":"),
    )


def decode_entry(raw: bytes | str) -> tuple[CachedAnswer, tuple[int, ...], float]:
    d = json.loads(raw)
    score = Score(float(d["s"]), tuple(float(v) for v in d["ss"]), str(d["l"]))
    answer = CachedAnswer(score, tuple(d["d"]), tuple(d["m"]), tuple(d["st"]))
    return answer, tuple(int(g) for g in d["g"]), float(d["x"])


def lookup_names(keys: Sequence[CacheKey]) -> tuple[list[str], list[tuple[str, str]]]:
    """The Redis keys of a lookup: the entries, then each entity's generation once; and those entities."""
    entities = list(dict.fromkeys(entity for key in keys for entity in key.entities))
    return [ENTRY_PREFIX + key.text for key in keys] + [generation_key(*entity) for entity in entities], entities


def misses(keys: Sequence[CacheKey]) -> list[SharedHit]:
    return [SharedHit(None, ()) for _ in keys]


def hits_of(keys: Sequence[CacheKey], entities: Sequence[tuple[str, str]], replies: Sequence[Any]) -> list[SharedHit]:
    """Answers from the replies to `lookup_names(keys)` (in that order): an entry is a hit while
    the generations it stores are its entities' current ones and it has not expired."""
    now = time.time()
    generation = {
        entity: int(g) if g is not None else 0 for entity, g in zip(entities, replies[len(keys) :], strict=True)
    }
    hits: list[SharedHit] = []
    for key, raw in zip(keys, replies, strict=False):
        current = tuple(generation[entity] for entity in key.entities)
        answer: CachedAnswer | None = None
        left = 0.0
        if raw is not None:
            try:
                stored, stored_gens, expires = decode_entry(raw)
            except (ValueError, KeyError, TypeError):
                stored, stored_gens, expires = None, (), 0.0
            if stored is not None and stored_gens == current and expires > now:
                answer, left = stored, expires - now
        hits.append(SharedHit(answer, current, left))
    return hits


def entry_sets(entries: Sequence[SharedEntry]) -> list[tuple[str, str, int]]:
    """(key, value, TTL in ms) of each entry to store."""
    now = time.time()
    return [
        (ENTRY_PREFIX + key.text, encode_entry(answer, generations, now + ttl_s), max(int(ttl_s * 1000), 1))
        for key, answer, generations, ttl_s in entries
    ]


async def follow(pubsub: PubSub, on_entity: Callable[[str, str], None]) -> None:
    """Hand every invalidation received on a subscribed `pubsub` to `on_entity`, until it fails."""
    while True:
        msg = await pubsub.get_message(timeout=1.0)
        if msg is None or msg.get("type") != "message":
            continue
        entity = parse_invalidation(msg["data"])
        if entity is not None:
            on_entity(*entity)


class RedisSharedCache:
    """The shared level on one Redis; a rediss:// `url` verifies the server against `tls`
    (predmesh.common.redistls: CA, client certificate), a failed handshake is a counted miss."""

    def __init__(
        self, url: str, timeout_s: float, on_error: Callable[[str], None] | None = None, tls: RedisTls | None = None
    ) -> None:
        ssl = ssl_options(url, tls)
        self._redis = aioredis.Redis.from_url(url, **ssl, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        # The subscription's own connection: it waits for messages, so no read timeout (a health
        # check PING every 30 s finds a dead connection instead).
        self._listener = aioredis.Redis.from_url(
            url, **ssl, socket_connect_timeout=timeout_s, socket_keepalive=True, health_check_interval=30
        )
        self._on_error = on_error or (lambda op: None)

    async def close(self) -> None:
        await self._redis.aclose()
        await self._listener.aclose()

    async def get_many(self, keys: Sequence[CacheKey]) -> list[SharedHit]:
        if not keys:
            return []
        names, entities = lookup_names(keys)
        try:
            replies: list[Any] = await self._redis.mget(names)
        except (RedisError, OSError) as err:
            self._failed("get", err)
            return misses(keys)
        return hits_of(keys, entities, replies)

    async def put_many(self, entries: Sequence[SharedEntry]) -> None:
        if not entries:
            return
        sets = entry_sets(entries)
        try:
            if len(sets) == 1:  # one command: no pipeline object
                await self._redis.set(sets[0][0], sets[0][1], px=sets[0][2])
                return
            pipe = self._redis.pipeline(transaction=False)
            for name, value, ms in sets:
                pipe.set(name, value, px=ms)
            await pipe.execute()
        except (RedisError, OSError) as err:
            self._failed("put", err)

    def _failed(self, op: str, err: BaseException) -> None:
        self._on_error(op)
        log.warning("prediction cache store %s failed: %s", op, type(err).__name__)

    async def run_invalidations(
        self,
        on_entity: Callable[[str, str], None],
        on_reset: Callable[[], None],
        ready: asyncio.Event | None = None,
        retry_s: float = 1.0,
    ) -> None:
        """Follow the invalidation channel until cancelled. `on_reset` runs after every
        (re)subscription: messages may have been missed while not subscribed."""
        while True:
            pubsub = self._listener.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(INVALIDATE_CHANNEL)
                on_reset()
                if ready is not None:
                    ready.set()
                await follow(pubsub, on_entity)
            except (RedisError, OSError) as err:
                self._failed("subscribe", err)
                on_reset()
                await asyncio.sleep(retry_s)
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
