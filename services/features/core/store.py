"""Reading stored features from Redis.

Layout: one hash per entity, `features:{entity_type}:{entity_id}`, field = feature
name, value = text (see `values.py`).

`RedisFeatureStore.fetch` reads any number of entities in ONE pipelined round trip
(`pipeline(transaction=False)`, one HGETALL per entity), traced as one `redis.pipeline`
span. Redis never keeps an empty hash, so an empty reply means the entity does not
exist (what EXISTS said before); one command per entity instead of EXISTS + HMGET
halves the commands Redis parses and the replies the client decodes.
Partial failure policy: any Redis error fails the whole batch with
`StoreUnavailable` (UNAVAILABLE) so the caller can degrade; no partial vectors.

Lifecycle: the store owns one `redis.asyncio` client and its connection pool, built
at start by the composition root and closed with `close()`. Use from one event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from predmesh.common import telemetry
from services.features.errors import StoreUnavailable

PIPELINE_SPAN = "redis.pipeline"


def entity_key(entity_type: str, entity_id: str) -> str:
    return f"features:{entity_type}:{entity_id}"


@dataclass(frozen=True, slots=True)
class StoredEntity:
    """What Redis holds for one entity: whether its hash exists and the raw fields read."""

    exists: bool
    # Every field that was asked for; `None` when the hash has no such field.
    fields: Mapping[str, bytes | None]


class FeatureStore(Protocol):
    """Async read interface of a feature store."""

    async def fetch(self, entity_type: str, entity_ids: Sequence[str], fields: Sequence[str]) -> list[StoredEntity]:
        """Read `fields` of every entity, in one round trip; aligned with `entity_ids`."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class RedisFeatureStore:
    """`FeatureStore` over redis.asyncio with a bounded, long-lived connection pool."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str, timeout_s: float, max_connections: int = 64, retries: int = 1) -> RedisFeatureStore:
        """Build the pool; nothing connects until the first command.

        `timeout_s` bounds connecting, each socket read/write and the wait for a free
        pooled connection; `retries` re-sends after a connection error or timeout, so a
        failing call takes at most about (retries + 1) * timeout_s.
        """
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), retries),
        )
        return cls(aioredis.Redis(connection_pool=pool))

    async def fetch(self, entity_type: str, entity_ids: Sequence[str], fields: Sequence[str]) -> list[StoredEntity]:
        if not entity_ids:
            return []
        with telemetry.span(
            PIPELINE_SPAN,
            **{"db.system": "redis", "db.operation": "HGETALL", "predmesh.entities": len(entity_ids)},
        ):
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for entity_id in entity_ids:
                        pipe.hgetall(entity_key(entity_type, entity_id))
                    replies = await pipe.execute()
            except (TimeoutError, RedisError, OSError) as err:
                raise StoreUnavailable(f"feature store unavailable: {type(err).__name__}: {err}") from err
        wanted = [(name, name.encode()) for name in fields]
        return [
            StoredEntity(exists=bool(hash_), fields={name: hash_.get(raw_name) for name, raw_name in wanted})
            for hash_ in replies
        ]

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (TimeoutError, RedisError, OSError) as err:
            raise StoreUnavailable(f"feature store unavailable: {type(err).__name__}: {err}") from err

    async def close(self) -> None:
        await self._client.aclose()
        await self._client.connection_pool.disconnect()
