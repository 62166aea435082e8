"""HGETALL of many keys on a Redis Cluster: one plain pipeline per master, sent concurrently.

redis-py's cluster pipeline resolves a command policy, a slot and a node in Python for every
command before grouping them (~1.36x the features service's CPU per entity of a single Redis,
docs/BENCHMARKS.md). `ShardedReader` does only what a read of entity hashes needs: the slot of
each key (`key_slot`, C CRC16), its master from the cluster client's slot map, then one pipelined
read per master (`hgetall.hgetall_many`) on a plain client of that node, all awaited together.

Anything unexpected on the fast path (slot map not loaded yet, MOVED/ASK after a resharding or a
failover, a connection error or timeout to a dead master) sends the whole batch through the
cluster client's own pipeline instead, which follows redirects, refreshes the slot map and
retries (`fallbacks` counts those). The fast path therefore never answers from a stale map:
a MOVED or a dead node fails it, and the slow path answers.

Ownership: the reader owns its per-node clients (created on first use of a node, kept until
`aclose()`, which closes them); the cluster client stays the caller's.
Use from one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from services.features.core.hgetall import hgetall_many

_FAST_PATH_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)


class ShardedReader:
    """Per-master pipelined HGETALL with the cluster client as the fallback (see the module docstring)."""

    def __init__(self, cluster: RedisCluster, timeout_s: float, max_connections: int) -> None:
        self._cluster = cluster
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._clients: dict[str, aioredis.Redis] = {}
        self.fallbacks = 0

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[bytes, bytes]]:
        try:
            return await self._fast(keys)
        except _FAST_PATH_ERRORS:
            self.fallbacks += 1
        async with self._cluster.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            return list(await pipe.execute())

    async def _fast(self, keys: Sequence[str]) -> list[dict[bytes, bytes]]:
        slots = self._cluster.nodes_manager
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for index, key in enumerate(keys):
            node = slots.get_node_from_slot(key_slot(key.encode()))
            group = groups.get(node.name)
            if group is None:
                groups[node.name] = group = (node, [])
            group[1].append(index)
        replies = await asyncio.gather(
            *(self._pipeline(node, [keys[i] for i in indexes]) for node, indexes in groups.values())
        )
        out: list[Any] = [None] * len(keys)
        for (_, indexes), values in zip(groups.values(), replies, strict=True):
            for index, value in zip(indexes, values, strict=True):
                out[index] = value
        return out

    async def _pipeline(self, node: ClusterNode, keys: list[str]) -> list[Any]:
        return await hgetall_many(self._client(node), keys)

    def _client(self, node: ClusterNode) -> aioredis.Redis:
        client = self._clients.get(node.name)
        if client is None:
            kwargs = {k: v for k, v in node.connection_kwargs.items() if k not in ("retry", "event_dispatcher")}
            kwargs.update(socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s)
            pool = aioredis.BlockingConnectionPool(
                connection_class=node.connection_class,
                max_connections=self._max_connections,
                timeout=self._timeout_s,
                **kwargs,
            )
            client = self._clients[node.name] = aioredis.Redis(connection_pool=pool)
        return client

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()
            await client.connection_pool.disconnect()
