"""Writing accepted events to a Redis Cluster: newest event per entity wins, per slot.

The single-Redis writer (`writer.RedisWriter`) sends the whole batch in one pipeline. On a
cluster every command must reach the master of its key's slot, so `ClusterRedisWriter`:

1. puts each event's `WRITE_IF_NEWER_LUA` call (one key: the entity's hash, so one slot; the
   script touches nothing else) on the master owning that key's slot, and the prediction
   cache's INCR of the entity's generation (another key, possibly another master) with its
   PUBLISH (cluster-wide) on the master owning the generation key;
2. sends one plain `pipeline(transaction=False)` per master, all at once (one thread per
   master from a small pool), on the cluster client's own per-node clients;
3. puts the script replies back in event order.

Events of one entity go to one master's pipeline in batch order, and the script compares
event times, so out-of-order and duplicated events leave the newest value exactly as on a
single Redis. Anything unexpected on that fast path (slot map not loaded, MOVED/ASK after a
resharding or a failover, a dead master) sends the WHOLE batch again through the cluster
client's pipeline (`EVAL` per event), which follows redirects, refreshes the slot map and
retries (`fallbacks` counts those). Re-sending is safe: each script call is idempotent
(an event already applied is not newer than itself); only the generation counters may be
incremented twice (a cache miss more). If the fallback fails too, the writer re-reads the
slot map itself, then raises `WriteFailed`: the consumer loop retries the batch later without
committing. That re-read is needed: redis-py's cluster pipeline asks its default node for
EVAL's keys (COMMAND GETKEYS) before anything else, and an error there skips its own refresh,
so a master that died while it was the default node would fail every later batch, even long
after its replica took over (seen: ingest stuck until restarted).

Blocking (sync redis-py): used from the consumer thread only. The cluster client is owned by
the caller; the writer owns its thread pool (`close()`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from predmesh.common.predcache import INVALIDATE_CHANNEL, generation_key, invalidation_message
from predmesh.featurestore.layout import WRITE_IF_NEWER_LUA, entity_key, write_args
from services.ingest.core.gates import Accepted
from services.ingest.errors import WriteFailed

log = logging.getLogger(__name__)

_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)


@dataclass
class _NodeBatch:
    """Commands for one master: script calls (with the event index of each) and invalidations."""

    node: ClusterNode
    writes: list[tuple[int, str, list[str]]] = field(default_factory=list)
    invalidations: list[Accepted] = field(default_factory=list)


class ClusterRedisWriter:
    """Per-master pipelines with the cluster client's pipeline as the fallback (module docstring)."""

    def __init__(self, cluster: RedisCluster, invalidate_cache: bool = True, max_threads: int = 8) -> None:
        self._cluster = cluster
        self._invalidate = invalidate_cache
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="ingest-cluster")
        self._scripts: dict[str, Script] = {}
        self.fallbacks = 0
        self.refreshes = 0

    def write(self, batch: Sequence[Accepted]) -> list[bool]:
        """Apply `batch`; per event, True when written, False when a newer one was stored.

        Raises `WriteFailed` when both the fast path and the cluster pipeline fail."""
        if not batch:
            return []
        try:
            return self._fast(batch)
        except _ERRORS:
            self.fallbacks += 1
        try:
            return self._through_cluster_client(batch)
        except _ERRORS as err:
            self._refresh_slot_map()
            raise WriteFailed(f"redis cluster write failed: {type(err).__name__}: {err}") from err

    def _refresh_slot_map(self) -> None:
        """Re-read slots, nodes and the default node from a live node (module docstring).

        Before the failover this may still name the dead master; the next failed batch reads again."""
        try:
            self._cluster.nodes_manager.initialize()
            self.refreshes += 1
        except _ERRORS as err:  # no node answered: the next failed batch tries again
            log.warning("redis cluster slot map not refreshed: %s: %s", type(err).__name__, err)

    def _fast(self, batch: Sequence[Accepted]) -> list[bool]:
        slots = self._cluster.nodes_manager
        groups: dict[str, _NodeBatch] = {}

        def group_of(key: str) -> _NodeBatch:
            node = slots.get_node_from_slot(key_slot(key.encode()))
            if node is None:
                raise RedisClusterException(f"no node for the slot of {key!r}")
            group = groups.get(node.name)
            if group is None:
                groups[node.name] = group = _NodeBatch(node)
            return group

        for index, event in enumerate(batch):
            key = entity_key(event.entity_type, event.entity_id)
            group_of(key).writes.append((index, key, write_args(event.event_time_ms, event.values)))
            if self._invalidate:
                group_of(generation_key(event.entity_type, event.entity_id)).invalidations.append(event)
        written: list[bool | None] = [None] * len(batch)
        futures = [self._pool.submit(self._send, group) for group in groups.values()]
        for group, future in zip(groups.values(), futures, strict=True):
            for (index, _, _), reply in zip(group.writes, future.result(), strict=True):
                written[index] = int(reply) == 1
        return [bool(w) for w in written]

    def _send(self, group: _NodeBatch) -> list[Any]:
        """One plain pipeline to `group.node`; returns the script replies in order."""
        client = self._cluster.get_redis_connection(group.node)
        script = self._script(group.node.name, client)
        with client.pipeline(transaction=False) as pipe:
            for _, key, args in group.writes:
                script(keys=[key], args=args, client=pipe)
            for event in group.invalidations:
                pipe.incr(generation_key(event.entity_type, event.entity_id))
                pipe.publish(INVALIDATE_CHANNEL, invalidation_message(event.entity_type, event.entity_id))
            replies = pipe.execute()
        return list(replies[: len(group.writes)])

    def _script(self, name: str, client: redis.Redis) -> Script:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = client.register_script(WRITE_IF_NEWER_LUA)
        return script

    def _through_cluster_client(self, batch: Sequence[Accepted]) -> list[bool]:
        with self._cluster.pipeline() as pipe:
            for event in batch:
                key = entity_key(event.entity_type, event.entity_id)
                args = write_args(event.event_time_ms, event.values)
                pipe.execute_command("EVAL", WRITE_IF_NEWER_LUA, 1, key, *args)  # its .eval() is blocked
                if self._invalidate:
                    pipe.incr(generation_key(event.entity_type, event.entity_id))
                    message = invalidation_message(event.entity_type, event.entity_id)
                    pipe.execute_command("PUBLISH", INVALIDATE_CHANNEL, message)  # its .publish() is blocked
            replies = pipe.execute()
        if self._invalidate:
            replies = replies[::3]
        return [int(reply) == 1 for reply in replies]

    def close(self) -> None:
        """Stop the pool's threads (after the consumer loop stopped)."""
        self._pool.shutdown(wait=True)
