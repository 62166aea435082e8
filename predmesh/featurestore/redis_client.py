"""Redis clients for the feature store: a single Redis or a Redis Cluster, from one URL.

`redis://host:port/db` (or `rediss://`) is a single Redis. `redis+cluster://host:port`
(or `rediss+cluster://`), or any URL with `cluster=True`, is a seed node of a Redis
Cluster: the client reads the slot map from it (CLUSTER SHARDS/SLOTS) and talks to
every master directly. What the cluster client does for us (redis-py's):
- a pipeline is split by slot owner, one pipeline per master, sent concurrently
  (`asyncio.gather` over the nodes), replies put back in command order;
- MOVED (slot migrated or failover: the new owner) and ASK (slot being migrated) are
  followed per command, and a MOVED refreshes the slot map;
- a connection error or timeout (a master died) closes the client and re-reads the slot
  map before each of `retries` re-sends, so once a replica was promoted the next
  request goes to it.

Key layout and slots: an entity is exactly one hash `features:{entity_type}:{entity_id}`,
so its fields live in one slot by construction (no hash tag is needed, and entities
spread over every shard). A key that must share the entity's slot (a companion key)
uses the entity key itself as its hash tag: `{features:user:u1}:suffix` hashes
exactly like `features:user:u1` (see `companion_key`).

Ownership: the caller owns the returned client and closes it (`aclose()` / `close()`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from predmesh.common.redistls import RedisTls, ssl_options

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

AsyncClient = aioredis.Redis | aiocluster.RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the features live: a plain redis-py URL and whether it names a cluster seed node."""

    url: str
    cluster: bool


def parse_target(url: str, cluster: bool = False) -> RedisTarget:
    """`redis+cluster://h:p` -> (`redis://h:p`, cluster); other URLs keep their scheme."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in CLUSTER_SCHEMES:
        return RedisTarget(f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}", True)
    return RedisTarget(url, cluster)


def companion_key(entity_key: str, suffix: str) -> str:
    """A key in the same cluster slot as `entity_key` (its hash tag is the whole entity key).

    Only valid for entity keys without a `{...}` hash tag of their own (checked)."""
    if "{" in entity_key:
        raise ValueError(f"entity key {entity_key!r} holds '{{': its companion keys would hash elsewhere")
    return f"{{{entity_key}}}:{suffix}"


def async_client(
    target: RedisTarget, timeout_s: float, max_connections: int, retries: int, tls: RedisTls | None = None
) -> AsyncClient:
    """A redis.asyncio client; nothing connects until the first command.

    `timeout_s` bounds connecting and each socket read/write (single Redis: also the wait
    for a pooled connection); `retries` re-sends after a connection error or timeout.
    With a cluster, `max_connections` is per node (over it: MaxConnectionsError).
    `rediss` URLs verify the server against `tls` (predmesh.common.redistls)."""
    if target.cluster:
        return aiocluster.RedisCluster.from_url(
            target.url,
            **ssl_options(target.url, tls),
            max_connections=max_connections,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=AsyncRetry(NoBackoff(), retries),
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        target.url,
        **ssl_options(target.url, tls),
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=AsyncRetry(NoBackoff(), retries),
    )
    return aioredis.Redis(connection_pool=pool)


async def aclose(client: AsyncClient) -> None:
    """Close the client and every connection it holds."""
    await client.aclose()
    if isinstance(client, aioredis.Redis):
        await client.connection_pool.disconnect()


def sync_client(target: RedisTarget, timeout_s: float = 30.0, connect_timeout_s: float = 5.0) -> SyncClient:
    """A blocking client (tooling, loaders); connects to a cluster's seed node at once."""
    if target.cluster:
        return redis.cluster.RedisCluster.from_url(
            target.url,
            socket_timeout=timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 3),
        )
    return redis.Redis.from_url(target.url, socket_timeout=timeout_s, socket_connect_timeout=connect_timeout_s)


def node_client(
    node: aiocluster.ClusterNode, timeout_s: float, max_connections: int, subscriber: bool = False
) -> aioredis.Redis:
    """A plain redis.asyncio client of ONE node of a cluster client's slot map, with that
    client's connection settings (password, TLS, protocol), for commands the caller routed
    itself (one pipeline per master). `timeout_s` bounds connecting, each read/write and the
    wait for a pooled connection; a `subscriber` client's reads wait for messages instead
    (no read timeout; TCP keepalive and a PING every 30 s find a dead connection).
    The caller closes it (`aclose()`)."""
    kwargs = {k: v for k, v in node.connection_kwargs.items() if k not in ("retry", "event_dispatcher")}
    kwargs.update(socket_timeout=None if subscriber else timeout_s, socket_connect_timeout=timeout_s)
    if subscriber:
        kwargs.update(socket_keepalive=True, health_check_interval=30)
    pool = aioredis.BlockingConnectionPool(
        connection_class=node.connection_class, max_connections=max_connections, timeout=timeout_s, **kwargs
    )
    return aioredis.Redis(connection_pool=pool)
