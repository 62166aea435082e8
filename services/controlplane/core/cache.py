"""Snapshot cache: the latest consistent snapshot per node key, and the open watches on it.

`set_snapshot(key, snapshot)` checks the snapshot, stores it, and answers every open
watch of that key whose known version of its type differs, by putting a `Response` on
the watch's asyncio queue. `create_watch(...)` answers at once when the stored
snapshot is newer than what the caller knows, otherwise it parks the watch until the
next `set_snapshot`. Nothing polls and nothing locks: every method is synchronous and
must be called from the event loop thread that owns the queues (the ADS streams'
loop). Writing to the gRPC stream is the stream's job, never the cache's.

Node keys: Envoys are grouped by `node_key(node)` (default: `node.cluster`, so every
edge Envoy started with `--service-cluster predmesh-edge` shares one snapshot; use
`by_node_id` for one snapshot per node, as go-control-plane's default does).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from services.controlplane.core.snapshot import Snapshot

log = logging.getLogger(__name__)


def by_node_cluster(node: Any) -> str:
    return str(node.cluster or node.id)


def by_node_id(node: Any) -> str:
    return str(node.id)


@dataclass(frozen=True)
class Response:
    """What a watch receives: the resources of one type at one version."""

    type_url: str
    version: str
    resources: tuple[Any, ...]
    watch_id: int


@dataclass(eq=False)
class Watch:
    """An open request for the next version of one type (owned by one ADS stream)."""

    id: int
    key: str
    type_url: str
    names: frozenset[str]
    known_version: str
    queue: asyncio.Queue[Any] = field(repr=False)


class SnapshotCache:
    """Latest snapshot per node key plus the watches waiting for a newer one."""

    def __init__(self, node_key: Callable[[Any], str] = by_node_cluster) -> None:
        self.node_key = node_key
        self._snapshots: dict[str, Snapshot] = {}
        self._watches: dict[str, dict[int, Watch]] = {}
        self._ids = itertools.count(1)

    # -- publishing ----------------------------------------------------------
    def set_snapshot(self, key: str, snapshot: Snapshot) -> int:
        """Check and store `snapshot` for `key`; answer open watches. Returns how many were answered.

        Raises InconsistentSnapshot (and keeps the previous snapshot) when the check fails.
        """
        snapshot.check()
        self._snapshots[key] = snapshot
        watches = self._watches.get(key, {})
        answered = [w for w in watches.values() if snapshot.type_version(w.type_url) != w.known_version]
        for watch in answered:
            del watches[watch.id]
            self._respond(watch, snapshot)
        log.info("snapshot %s set for %r (answered %d watches)", snapshot.version, key, len(answered))
        return len(answered)

    def get_snapshot(self, key: str) -> Snapshot | None:
        return self._snapshots.get(key)

    def clear_snapshot(self, key: str) -> None:
        self._snapshots.pop(key, None)

    def keys(self) -> list[str]:
        return sorted(self._snapshots)

    # -- watching --------------------------------------------------------------
    def create_watch(
        self, node: Any, type_url: str, names: Iterable[str], known_version: str, queue: asyncio.Queue[Any]
    ) -> Watch:
        """Watch `type_url` for `node`. The response lands on `queue` now or at the next newer snapshot.

        Returns the watch; `cancel_watch` it when the stream moves on or closes
        (cancelling an answered watch is a no-op).
        """
        key = self.node_key(node)
        watch = Watch(next(self._ids), key, type_url, frozenset(names), known_version, queue)
        snapshot = self._snapshots.get(key)
        if snapshot is not None and snapshot.type_version(type_url) != known_version:
            self._respond(watch, snapshot)
        else:
            self._watches.setdefault(key, {})[watch.id] = watch
        return watch

    def cancel_watch(self, watch: Watch) -> None:
        self._watches.get(watch.key, {}).pop(watch.id, None)

    def open_watches(self, key: str | None = None) -> int:
        if key is not None:
            return len(self._watches.get(key, {}))
        return sum(len(w) for w in self._watches.values())

    @staticmethod
    def _respond(watch: Watch, snapshot: Snapshot) -> None:
        resources = tuple(snapshot.get(watch.type_url, watch.names))
        watch.queue.put_nowait(Response(watch.type_url, snapshot.type_version(watch.type_url), resources, watch.id))
