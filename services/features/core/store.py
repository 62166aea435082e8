"""Reading stored features from Redis.

Layout (`predmesh.featurestore.layout`, shared with the ingestion service and the loader):
one hash per entity, `features:{entity_type}:{entity_id}`, field = feature name, value =
text, plus the reserved field `@event_time_ms`: the event time (Unix ms) of the newest
write, read here with the values in one HGETALL.

`RedisFeatureStore.fetch_keys` reads any number of entities, of any entity types, in ONE
pipelined round trip (one HGETALL per entity, written at once: `hgetall.hgetall_many`, what
`pipeline(transaction=False)` did without redis-py's pipeline layer), traced as one
`redis.pipeline` span (`fetch` is the one-type shorthand). Redis never keeps an empty
hash, so an empty reply means the entity does not exist (what EXISTS said before); one
command per entity instead of EXISTS + HMGET halves the commands Redis parses and the
replies the client decodes.
Partial failure policy: any Redis error fails the whole batch with
`StoreUnavailable` (UNAVAILABLE) so the caller can degrade; no partial vectors.

Redis Cluster (`redis+cluster://` URLs, see `predmesh.featurestore.redis_client`): the entities are split
into one pipeline per master, sent concurrently (`cluster_reads.ShardedReader`; or
redis-py's cluster pipeline with `cluster_fast_path=False`); MOVED/ASK and failover are
followed by the cluster client. An entity is one key, hence one slot.

Lifecycle: the store owns one `redis.asyncio` client (single or cluster) and its
connections, built at start by the composition root and closed with `close()`. Use
from one event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from predmesh.common import telemetry
from predmesh.common.redistls import RedisTls
from predmesh.featurestore import redis_client
from predmesh.featurestore.layout import EVENT_TIME_FIELD, entity_key
from predmesh.featurestore.redis_client import AsyncClient
from services.features.core.cluster_reads import ShardedReader
from services.features.core.hgetall import hgetall_many
from services.features.errors import StoreUnavailable

PIPELINE_SPAN = "redis.pipeline"


_EVENT_TIME_RAW = EVENT_TIME_FIELD.encode()


def _event_time(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class StoredEntity:
    """What Redis holds for one entity: whether its hash exists and the raw fields read."""

    exists: bool
    # Every field that was asked for; `None` when the hash has no such field.
    fields: Mapping[str, bytes | None]
    # Event time (Unix ms) of the newest write; None when unknown (written before event times).
    event_time_ms: int | None = None


class EntityReader(Protocol):
    """What the assembler reads through: a store, or the `ReadCoalescer` in front of one."""

    async def fetch_keys(self, keys: Sequence[tuple[str, str, Sequence[str]]]) -> list[StoredEntity]:
        """Read (entity_type, entity_id, fields) entities of any types, in one round trip; aligned with `keys`."""
        ...


class FeatureStore(EntityReader, Protocol):
    """Async read interface of a feature store."""

    async def fetch(self, entity_type: str, entity_ids: Sequence[str], fields: Sequence[str]) -> list[StoredEntity]:
        """Read `fields` of every entity, in one round trip; aligned with `entity_ids`."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class RedisFeatureStore:
    """`FeatureStore` over redis.asyncio with a bounded, long-lived connection pool."""

    def __init__(self, client: AsyncClient, sharded: ShardedReader | None = None) -> None:
        self._client = client
        self._sharded = sharded  # cluster fast path: one plain pipeline per master

    @property
    def clustered(self) -> bool:
        return isinstance(self._client, RedisCluster)

    @property
    def cluster_fallbacks(self) -> int:
        """Reads the cluster fast path handed to the cluster client (0 without the fast path)."""
        return self._sharded.fallbacks if self._sharded is not None else 0

    @classmethod
    def from_url(
        cls,
        url: str,
        timeout_s: float,
        max_connections: int = 64,
        retries: int = 1,
        tls: RedisTls | None = None,
        cluster: bool = False,
        cluster_fast_path: bool = True,
    ) -> RedisFeatureStore:
        """Build the client; nothing connects until the first command.

        `url` names a single Redis, or a cluster seed node when `cluster` is set or its
        scheme is `redis+cluster://`. `timeout_s` bounds connecting, each socket
        read/write and the wait for a free pooled connection; `retries` re-sends after a
        connection error or timeout, so a failing call takes at most about
        (retries + 1) * timeout_s (a cluster adds 0.25 s and a slot-map refresh per retry).
        A rediss:// (or rediss+cluster://) URL connects over TLS, verifying the server's
        certificate (and host name) against `tls.ca` (or the system CAs) and presenting
        `tls.cert`/`tls.key` when the server asks for a client certificate.
        On a cluster, `cluster_fast_path` reads through `ShardedReader` (one plain pipeline
        per master; the cluster client's pipeline on any redirect or error).
        """
        target = redis_client.parse_target(url, cluster)
        client = redis_client.async_client(target, timeout_s, max_connections, retries, tls)
        sharded = None
        if isinstance(client, RedisCluster) and cluster_fast_path:
            sharded = ShardedReader(client, timeout_s, max_connections)
        return cls(client, sharded)

    async def fetch(self, entity_type: str, entity_ids: Sequence[str], fields: Sequence[str]) -> list[StoredEntity]:
        return await self.fetch_keys([(entity_type, entity_id, fields) for entity_id in entity_ids])

    async def fetch_keys(self, keys: Sequence[tuple[str, str, Sequence[str]]]) -> list[StoredEntity]:
        if not keys:
            return []
        with telemetry.span(
            PIPELINE_SPAN,
            **{"db.system": "redis", "db.operation": "HGETALL", "predmesh.entities": len(keys)},
        ):
            return await self.read(keys)

    async def read(self, keys: Sequence[tuple[str, str, Sequence[str]]]) -> list[StoredEntity]:
        """`fetch_keys` without its span (the `ReadCoalescer` traces each of its callers instead)."""
        if not keys:
            return []
        try:
            if self._sharded is not None:
                replies = await self._sharded.hgetall_many([entity_key(t, e) for t, e, _ in keys])
            elif isinstance(self._client, RedisCluster):  # cluster without the fast path
                async with self._client.pipeline(transaction=False) as pipe:
                    for entity_type, entity_id, _fields in keys:
                        pipe.hgetall(entity_key(entity_type, entity_id))
                    replies = await pipe.execute()
            else:
                replies = await hgetall_many(self._client, [entity_key(t, e) for t, e, _ in keys])
        except (TimeoutError, RedisError, OSError) as err:
            raise StoreUnavailable(f"feature store unavailable: {type(err).__name__}: {err}") from err
        encoded: dict[int, list[tuple[str, bytes]]] = {}  # field names encoded once per distinct list
        out = []
        for (_type, _id, fields), hash_ in zip(keys, replies, strict=True):
            wanted = encoded.get(id(fields))
            if wanted is None:
                wanted = encoded[id(fields)] = [(name, name.encode()) for name in fields]
            out.append(
                StoredEntity(
                    exists=bool(hash_),
                    fields={name: hash_.get(raw_name) for name, raw_name in wanted},
                    event_time_ms=_event_time(hash_.get(_EVENT_TIME_RAW)),
                )
            )
        return out

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (TimeoutError, RedisError, OSError) as err:
            raise StoreUnavailable(f"feature store unavailable: {type(err).__name__}: {err}") from err

    async def close(self) -> None:
        if self._sharded is not None:
            await self._sharded.aclose()
        await redis_client.aclose(self._client)
