"""A small TTL + LRU cache of stored entities for hot keys.

Staleness trade-off: an entry is served for up to `ttl_s` after it was read from
Redis, so a write to Redis (e.g. a feature load) becomes visible to this replica
only after at most `ttl_s`. Unknown entities are cached too (negative caching).
Keep the TTL short (hundreds of ms) so bursts for one entity share a read.

Owned by one event loop; not thread-safe (no awaits inside, so no locks needed).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass

from services.features.core.store import StoredEntity


@dataclass(frozen=True, slots=True)
class _Entry:
    entity: StoredEntity
    expires_at: float


class EntityCache:
    """Maps (entity_type, entity_id) to the `StoredEntity` last read from Redis."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or max_entries <= 0:
            raise ValueError("ttl_s and max_entries must be positive (disable the cache instead)")
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, entity_type: str, entity_id: str, fields: Collection[str]) -> StoredEntity | None:
        """The cached entity if it is fresh and holds every field in `fields`, else `None`."""
        key = (entity_type, entity_id)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.expires_at <= self._clock():
            del self._entries[key]
            self.misses += 1
            return None
        if any(name not in entry.entity.fields for name in fields):
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.entity

    def put(self, entity_type: str, entity_id: str, entity: StoredEntity) -> None:
        """Store a fresh read (replacing any older entry), evicting least recently used entries."""
        key = (entity_type, entity_id)
        self._entries[key] = _Entry(entity, self._clock() + self._ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
