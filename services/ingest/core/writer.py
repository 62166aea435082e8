"""Writing accepted events to Redis: newest event per entity wins, atomically per entity.

`RedisWriter.write(batch)` sends one `WRITE_IF_NEWER_LUA` call per event (the features
store's layout: one hash per entity holding its values and `@event_time_ms`) in ONE
pipelined round trip (`transaction=False`: each script call is atomic on its own key, so
the batch stays valid on Redis Cluster). Events of one entity in one batch are applied in
order and the script compares event times, so the result does not depend on arrival order,
and replaying a batch (at-least-once delivery) changes nothing.

With `invalidate_cache` (the default), each event's script call is followed, in the same
pipeline, by the prediction cache's invalidation (`predmesh.common.predcache`): INCR of the
entity's generation and a PUBLISH of the entity, so gateways stop serving cached answers
scored on the entity's older features (also for replayed events that wrote nothing: harmless).

Blocking (sync redis-py client): used from the consumer thread only, never from async code.
The client (and its pool) is owned by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import redis
from redis.exceptions import RedisError

from predmesh.common.predcache import INVALIDATE_CHANNEL, generation_key, invalidation_message
from predmesh.featurestore.layout import WRITE_IF_NEWER_LUA, entity_key, write_args
from services.ingest.core.gates import Accepted
from services.ingest.errors import WriteFailed


class Writer(Protocol):
    """What the consumer loop writes through: `RedisWriter` (one Redis) or `ClusterRedisWriter`."""

    def write(self, batch: Sequence[Accepted]) -> list[bool]: ...

    def close(self) -> None: ...


class RedisWriter:
    def __init__(self, client: redis.Redis, invalidate_cache: bool = True) -> None:
        self._client = client
        self._invalidate = invalidate_cache
        self._script = client.register_script(WRITE_IF_NEWER_LUA)

    def write(self, batch: Sequence[Accepted]) -> list[bool]:
        """Apply `batch` in order; per event, True when written, False when a newer one was stored.

        Raises `WriteFailed` when Redis fails: the caller retries the whole batch (idempotent).
        """
        if not batch:
            return []
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for event in batch:
                    self._script(
                        keys=[entity_key(event.entity_type, event.entity_id)],
                        args=write_args(event.event_time_ms, event.values),
                        client=pipe,
                    )
                    if self._invalidate:
                        pipe.incr(generation_key(event.entity_type, event.entity_id))
                        pipe.publish(INVALIDATE_CHANNEL, invalidation_message(event.entity_type, event.entity_id))
                replies = pipe.execute()
            if self._invalidate:
                replies = replies[::3]
        except (RedisError, OSError) as err:
            raise WriteFailed(f"redis write failed: {type(err).__name__}: {err}") from err
        return [int(reply) == 1 for reply in replies]

    def close(self) -> None:
        """Nothing to release (the client is the caller's)."""
