"""Feature assembly: resolve names, read Redis once, overlay context, validate, default.

`FeatureAssembler.get_features` is the whole request path:

1. resolve the entity type's group (unknown -> NOT_FOUND) and every requested name
   and context key (unknown -> INVALID_ARGUMENT); check the entity list and ids;
2. take fresh entities from the TTL-LRU cache, read the rest in one pipelined Redis
   round trip (only the requested store-sourced fields);
3. per entity and feature: a context value overrides the stored one. A context value
   that fails validation (wrong kind, NaN/inf, out of range, unknown category, no value)
   is the caller's error: INVALID_ARGUMENT naming the entity and field, checked before
   Redis is read. Stored values are validated too: an invalid one gets the registered
   default (listed in `invalid`, counted); missing ones get it as well (listed in
   `missing`; the store-sourced ones also in `store_missing`, which callers use to
   flag answers scored without the entity's stored data).
4. freshness: the entity's stored event time comes back in the same HGETALL; a stored
   value older than its feature's (or group's) `max_age_s` is treated as missing: the
   default is served and the name listed in `stale` (not in `missing`). An entity with no
   stored event time (loaded before event times existed) is never stale. The age of every
   entity with an event time is observed in a histogram per entity type.

Use from one event loop; the assembler holds no per-request state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from predmesh.common.errors import InvalidArgument
from services.features.core.cache import EntityCache
from services.features.core.registry import Registry
from services.features.core.spec import FeatureGroup, FeatureSpec, Scalar, Source
from services.features.core.store import FeatureStore, StoredEntity
from services.features.core.values import coerce, parse_stored, why_invalid
from services.features.errors import BadEntities, InvalidContextValue, UnknownFeature
from services.features.metrics import FeaturesMetrics


@dataclass(frozen=True, slots=True)
class EntityRequest:
    entity_id: str
    # Request-time values by feature name; `None` means "a value with no kind set".
    context: Mapping[str, Scalar | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FeatureQuery:
    entity_type: str
    entities: Sequence[EntityRequest]
    features: Sequence[str]


@dataclass(frozen=True, slots=True)
class FeatureVector:
    entity_id: str
    values: list[Scalar]  # aligned with FeatureQuery.features
    missing: list[str]
    invalid: list[str]
    entity_unknown: bool
    store_missing: list[str] = field(default_factory=list)  # store-sourced subset of `missing`
    stale: list[str] = field(default_factory=list)  # stored values older than max_age_s (defaulted)


@dataclass(frozen=True, slots=True)
class Limits:
    max_entities: int = 1024
    max_entity_id_length: int = 256


class FeatureAssembler:
    """Builds validated feature vectors from the registry, a store and an optional cache."""

    def __init__(
        self,
        registry: Registry,
        store: FeatureStore,
        cache: EntityCache | None = None,
        limits: Limits | None = None,
        metrics: FeaturesMetrics | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._wall_clock = wall_clock  # Unix seconds; compared with stored event times
        self._registry = registry
        self._store = store
        self._cache = cache
        self._limits = limits or Limits()
        self._metrics = metrics

    def describe(self, entity_type: str) -> FeatureGroup:
        return self._registry.group(entity_type)

    async def get_features(self, query: FeatureQuery) -> list[FeatureVector]:
        group = self._registry.group(query.entity_type)
        specs = self._resolve(group, query.features)
        self._check_entities(group, query.entities)
        store_fields = list(dict.fromkeys(s.name for s in specs if s.source is Source.STORE))
        stored = await self._read(query.entity_type, query.entities, store_fields)
        now_ms = self._wall_clock() * 1000.0
        max_ages_ms = [_max_age_ms(group, spec) for spec in specs]
        vectors = [_assemble(specs, entity, stored[entity.entity_id], max_ages_ms, now_ms) for entity in query.entities]
        if self._metrics is not None:
            self._count(query.entity_type, vectors)
            self._observe_ages(query.entity_type, stored.values(), now_ms)
        return vectors

    def _observe_ages(self, entity_type: str, stored: Iterable[StoredEntity], now_ms: float) -> None:
        assert self._metrics is not None
        histogram = self._metrics.age.labels(entity_type)
        for entity in stored:
            if entity.event_time_ms is not None:
                histogram.observe(max(0.0, now_ms - entity.event_time_ms) / 1000.0)

    def _count(self, entity_type: str, vectors: Sequence[FeatureVector]) -> None:
        assert self._metrics is not None
        m = self._metrics
        for vec in vectors:
            for name in vec.missing:
                m.defaults_used.labels(entity_type, name, "missing").inc()
            for name in vec.invalid:
                m.defaults_used.labels(entity_type, name, "invalid").inc()
            for name in vec.stale:
                m.defaults_used.labels(entity_type, name, "stale").inc()
            if vec.entity_unknown:
                m.unknown_entities.labels(entity_type).inc()

    def _resolve(self, group: FeatureGroup, names: Sequence[str]) -> list[FeatureSpec]:
        if not names:
            raise InvalidArgument("features must name at least one feature")
        specs = []
        for name in names:
            spec = group.get(name)
            if spec is None:
                raise UnknownFeature(f"feature {name!r} is not registered for entity type {group.entity_type!r}")
            specs.append(spec)
        return specs

    def _check_entities(self, group: FeatureGroup, entities: Sequence[EntityRequest]) -> None:
        if not entities:
            raise BadEntities("entities must hold at least one entity")
        if len(entities) > self._limits.max_entities:
            raise BadEntities(f"too many entities: {len(entities)} > {self._limits.max_entities}")
        for index, entity in enumerate(entities):
            if not entity.entity_id:
                raise BadEntities(f"entities[{index}].entity_id is empty")
            if len(entity.entity_id) > self._limits.max_entity_id_length:
                raise BadEntities(
                    f"entities[{index}].entity_id is longer than {self._limits.max_entity_id_length} characters"
                )
            for key, value in entity.context.items():
                spec = group.get(key)
                if spec is None:
                    raise UnknownFeature(
                        f"entities[{index}].context key {key!r} is not a registered feature"
                        f" of entity type {group.entity_type!r}"
                    )
                if coerce(spec, value) is None:
                    raise InvalidContextValue(
                        f"entities[{index}].context[{key!r}] (entity {entity.entity_id[:64]!r}): "
                        f"{why_invalid(spec, value)}"
                    )

    async def _read(
        self, entity_type: str, entities: Sequence[EntityRequest], fields: list[str]
    ) -> dict[str, StoredEntity]:
        stored: dict[str, StoredEntity] = {}
        to_fetch: list[str] = []
        for entity_id in dict.fromkeys(e.entity_id for e in entities):
            cached = self._cache.get(entity_type, entity_id, fields) if self._cache is not None else None
            if cached is not None:
                stored[entity_id] = cached
            else:
                to_fetch.append(entity_id)
        if self._metrics is not None:
            if len(stored):
                self._metrics.entities.labels(entity_type, "cache").inc(len(stored))
            if to_fetch:
                self._metrics.entities.labels(entity_type, "redis").inc(len(to_fetch))
        if to_fetch:
            fetched = await self._store.fetch(entity_type, to_fetch, fields)
            for entity_id, entity in zip(to_fetch, fetched, strict=True):
                stored[entity_id] = entity
                if self._cache is not None:
                    self._cache.put(entity_type, entity_id, entity)
        return stored


def _max_age_ms(group: FeatureGroup, spec: FeatureSpec) -> float | None:
    if spec.source is not Source.STORE:
        return None
    max_age_s = group.max_age_of(spec)
    return None if max_age_s is None else max_age_s * 1000.0


def _assemble(
    specs: Sequence[FeatureSpec],
    entity: EntityRequest,
    stored: StoredEntity,
    max_ages_ms: Sequence[float | None],
    now_ms: float,
) -> FeatureVector:
    """One entity's vector; context values were validated by `_check_entities` already."""
    values: list[Scalar] = []
    missing: list[str] = []
    invalid: list[str] = []
    store_missing: list[str] = []
    stale: list[str] = []
    age_ms = None if stored.event_time_ms is None else now_ms - stored.event_time_ms
    for spec, max_age_ms in zip(specs, max_ages_ms, strict=True):
        value: Scalar | None
        if spec.name in entity.context:
            value = coerce(spec, entity.context[spec.name])
            bad = invalid
        elif (
            max_age_ms is not None
            and age_ms is not None
            and age_ms > max_age_ms
            and stored.fields.get(spec.name) is not None
        ):
            value = None
            bad = stale
        elif spec.source is Source.STORE and (raw := stored.fields.get(spec.name)) is not None:
            value = parse_stored(spec, raw)
            bad = invalid
        else:
            value = None
            bad = missing
        if value is None:
            value = spec.default
            if spec.name not in bad:
                bad.append(spec.name)
                if bad is missing and spec.source is Source.STORE:
                    store_missing.append(spec.name)
        values.append(value)
    return FeatureVector(
        entity_id=entity.entity_id,
        values=values,
        missing=missing,
        invalid=invalid,
        entity_unknown=not stored.exists,
        store_missing=store_missing,
        stale=stale,
    )
