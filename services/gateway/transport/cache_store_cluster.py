"""The prediction cache's shared level on a Redis Cluster (`redis+cluster://`, `rediss+cluster://`).

Same keys, entries and invalidation contract as the single-Redis level (`cache_store.py`, whose
helpers build the key names and read the replies); only the routing differs, because one MGET
cannot cross slots and a window's entries and generations live on every master:

- **lookup** (a coalescing window's entries and each entity's generation): the keys are grouped
  by the master that owns their slot (`group_by_node`: C CRC16 + the cluster client's slot map)
  and each master gets ONE command, a read-only script that GETs its keys (`LOOKUP_SCRIPT`,
  `flags=allow-cross-slot-keys`, Redis >= 7.0), all masters at once. The keys go in ARGV, not
  KEYS (declared keys of several slots are refused with CROSSSLOT), and the server still checks
  every GET in the script against its own slot map: a key this node does not serve (stale map,
  slot being migrated, a failed master back as a replica) fails the script, it never reads as
  absent. Cheaper for the gateway than one command per key (a pipeline of GETs per master):
  docs/BENCHMARKS.md, "Prediction cache shared level on a Redis Cluster";
- **store**: one `pipeline(transaction=False)` of `SET .. PX` per master, all at once;
- **fallback**: the keys of a master whose call failed (MOVED/ASK after a resharding or a
  failover, a dead master, a timeout, a script refused by an older server), or all keys when the
  slot map is not loaded, go through ONE pipeline of redis-py's cluster client, which follows
  redirects, re-reads the slot map and retries (`fallbacks` counts them), bounded by the timeout.
  What neither path read is a miss (an unread generation is never taken as 0) and what neither
  stored is not stored, counted once per call through `on_error` like the single-Redis level;
  the other masters' keys still answer, and the caller never sees an error. Worst case per call:
  about two timeouts (the fast path's, then the fallback's);
- **invalidations**: a PUBLISH reaches every node of the cluster, so the level subscribes on ONE
  node (master or replica, a random one so that gateways spread). When that subscription fails,
  `on_reset` clears the in-process level (messages may have been missed), the slot map is
  re-read and another node is tried at once (then every `retry_s`); `on_reset` runs again once
  subscribed, as on a single Redis.

Ownership: the level owns its cluster client and its per-node clients (`close()`); passwords
come from the URL, TLS from a `rediss+cluster://` URL with the `tls` files (CA, client
certificate: `predmesh.featurestore.redis_client`), and every per-node client copies them. Use from one event loop;
`run_invalidations` runs as one task until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from predmesh.common.predcache import INVALIDATE_CHANNEL
from predmesh.common.redistls import RedisTls
from predmesh.featurestore.redis_client import aclose, async_client, node_client, parse_target
from services.gateway.core.cache import CacheKey, SharedEntry, SharedHit
from services.gateway.transport.cache_store import RedisSharedCache, entry_sets, follow, hits_of, lookup_names

log = logging.getLogger(__name__)
_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)
LOOKUP_SCRIPT = (
    "#!lua flags=allow-cross-slot-keys,no-writes\n"
    "local r = {} for i, k in ipairs(ARGV) do r[i] = redis.call('GET', k) end return r"
)


class _Node(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Node)


def group_by_node(names: Sequence[str], node_of_slot: Callable[[int], N | None]) -> dict[str, tuple[N, list[int]]]:
    """Positions of `names` per node serving their slot (node name -> (node, positions in order)).

    Raises RedisClusterException when a slot has no node (the slot map is incomplete)."""
    groups: dict[str, tuple[N, list[int]]] = {}
    for index, name in enumerate(names):
        node = node_of_slot(key_slot(name.encode()))
        if node is None:
            raise RedisClusterException(f"no node serves the slot of {name!r}")
        group = groups.get(node.name)
        if group is None:
            groups[node.name] = group = (node, [])
        group[1].append(index)
    return groups


class ClusterSharedCache:
    """The shared level on a Redis Cluster (see the module docstring)."""

    def __init__(
        self,
        url: str,
        timeout_s: float,
        on_error: Callable[[str], None] | None = None,
        max_connections: int = 8,
        retries: int = 1,
        tls: RedisTls | None = None,
    ) -> None:
        cluster = async_client(parse_target(url, cluster=True), timeout_s, max_connections, retries, tls)
        if not isinstance(cluster, RedisCluster):  # parse_target(.., cluster=True) always names a cluster
            raise TypeError(f"not a cluster client: {type(cluster).__name__}")
        self._cluster = cluster
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._on_error = on_error or (lambda op: None)
        self._clients: dict[str, aioredis.Redis] = {}
        self.fallbacks = 0
        self._logged_fallback_at = -60.0

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()
            await client.connection_pool.disconnect()
        await aclose(self._cluster)

    async def get_many(self, keys: Sequence[CacheKey]) -> list[SharedHit]:
        if not keys:
            return []
        names, entities = lookup_names(keys)
        replies, lost = await self._per_master(
            names,
            lambda node, idx: self._lookup(node, [names[i] for i in idx]),
            lambda pipe, i: pipe.get(names[i]),
            "get",
        )
        hits = hits_of(keys, entities, replies)
        if lost:  # an unread entry, or an unread generation (never taken as 0), is a miss
            generation_at = {entity: len(keys) + j for j, entity in enumerate(entities)}
            for i, key in enumerate(keys):
                if i in lost or any(generation_at[entity] in lost for entity in key.entities):
                    hits[i] = SharedHit(None, ())
        return hits

    async def put_many(self, entries: Sequence[SharedEntry]) -> None:
        if not entries:
            return
        sets = entry_sets(entries)
        await self._per_master(
            [name for name, _, _ in sets],
            lambda node, idx: self._store(node, [sets[i] for i in idx]),
            lambda pipe, i: pipe.set(sets[i][0], sets[i][1], px=sets[i][2]),
            "put",
        )

    async def _per_master(
        self,
        names: list[str],
        fast: Callable[[ClusterNode, list[int]], Awaitable[list[Any]]],
        slow: Callable[[ClusterPipeline, int], object],
        op: str,
    ) -> tuple[list[Any], set[int]]:
        """`fast(node, positions)` per master, all at once; the positions of the masters that
        failed go through the cluster client's pipeline (`slow(pipe, position)` queues one
        command), bounded by the timeout. Returns the replies in `names` order and the positions
        that neither path answered (counted as one `op` failure)."""
        out: list[Any] = [None] * len(names)
        retry: list[int] = []
        why: BaseException | None = None
        try:
            await self._cluster.initialize()  # reads the slot map once (then: returns at once)
            groups = list(group_by_node(names, self._cluster.nodes_manager.get_node_from_slot).values())
        except (*_ERRORS, KeyError) as err:  # no slot map (seed unreachable) or a hole in it
            groups, retry, why = [], list(range(len(names))), err
        parts = await asyncio.gather(*(fast(node, idx) for node, idx in groups), return_exceptions=True)
        for (_, indexes), part in zip(groups, parts, strict=True):
            if isinstance(part, BaseException):
                if not isinstance(part, _ERRORS):
                    raise part
                retry.extend(indexes)
                why = part
                continue
            for index, value in zip(indexes, part, strict=True):
                out[index] = value
        if not retry:
            return out, set()
        self._fell_back(op, why)
        try:  # follows MOVED/ASK, re-reads the slot map, retries and may back off: bounded like one call
            async with asyncio.timeout(self._timeout_s), self._cluster.pipeline() as pipe:
                for index in retry:
                    slow(pipe, index)
                values = await pipe.execute()
        except _ERRORS as err:
            self._failed(op, err)
            return out, set(retry)
        for index, value in zip(retry, values, strict=True):
            out[index] = value
        return out, set()

    async def _lookup(self, node: ClusterNode, names: list[str]) -> list[Any]:
        return list(await self._client(node).eval(LOOKUP_SCRIPT, 0, *names))  # type: ignore[misc]

    async def _store(self, node: ClusterNode, sets: list[tuple[str, str, int]]) -> list[Any]:
        async with self._client(node).pipeline(transaction=False) as pipe:
            for name, value, ms in sets:
                pipe.set(name, value, px=ms)
            return list(await pipe.execute())

    def _client(self, node: ClusterNode) -> aioredis.Redis:
        client = self._clients.get(node.name)
        if client is None:
            client = self._clients[node.name] = node_client(node, self._timeout_s, self._max_connections)
        return client

    def _fell_back(self, op: str, why: BaseException | None) -> None:
        """Count a fallback; log it at most once a minute (a failover makes many; an old server
        refusing the script makes every call fall back)."""
        self.fallbacks += 1
        now = time.monotonic()
        if now - self._logged_fallback_at >= 60.0:
            self._logged_fallback_at = now
            log.warning(
                "prediction cache cluster %s through the cluster client (%d fallbacks so far): %s",
                op,
                self.fallbacks,
                type(why).__name__,
            )

    def _failed(self, op: str, err: BaseException) -> None:
        self._on_error(op)
        log.warning("prediction cache cluster %s failed: %s", op, type(err).__name__)

    async def run_invalidations(
        self,
        on_entity: Callable[[str, str], None],
        on_reset: Callable[[], None],
        ready: asyncio.Event | None = None,
        retry_s: float = 1.0,
    ) -> None:
        """Follow the invalidation channel on one node until cancelled (see the module docstring)."""
        failed: str | None = None
        attempts = 0
        while True:
            if attempts > 1:  # the next node failed as well: wait before another round
                await asyncio.sleep(retry_s)
            attempts += 1
            try:
                node = await self._subscription_node(failed)
            except _ERRORS as err:
                self._failed("subscribe", err)
                continue
            client = node_client(node, self._timeout_s, 1, subscriber=True)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(INVALIDATE_CHANNEL)
                failed, attempts = None, 0
                on_reset()
                if ready is not None:
                    ready.set()
                await follow(pubsub, on_entity)
            except _ERRORS as err:
                failed = node.name
                self._failed("subscribe", err)
                on_reset()
            finally:
                with suppress(*_ERRORS):
                    await pubsub.aclose()
                with suppress(*_ERRORS):
                    await client.aclose()
                    await client.connection_pool.disconnect()

    async def _subscription_node(self, failed: str | None) -> ClusterNode:
        """A node to subscribe on: any but the one that just failed (after re-reading the map)."""
        await self._cluster.initialize()
        if failed is not None:
            with suppress(*_ERRORS):
                await self._cluster.nodes_manager.initialize()
        nodes = self._cluster.get_nodes()
        others = [node for node in nodes if node.name != failed]
        if not others:
            raise RedisClusterException("no node of the cluster is known")
        return random.choice(others)


def open_shared_cache(
    url: str, timeout_s: float, on_error: Callable[[str], None] | None = None, tls: RedisTls | None = None
) -> RedisSharedCache | ClusterSharedCache:
    """The shared level for `url`: a Redis Cluster for `redis+cluster://` / `rediss+cluster://`
    (predmesh.featurestore.redis_client), else one Redis; rediss URLs verify against `tls`."""
    if parse_target(url).cluster:
        return ClusterSharedCache(url, timeout_s, on_error, tls=tls)
    return RedisSharedCache(url, timeout_s, on_error, tls)
