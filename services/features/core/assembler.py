"""Feature assembly: resolve names, read Redis once, overlay context, validate, default.

`FeatureAssembler.get_features` is the whole request path:

1. resolve the entity type's group (unknown -> NOT_FOUND) and every requested name
   and context key (unknown -> INVALID_ARGUMENT); check the entity list and ids.
   A name `type.feature` is a store feature of another entity type (e.g. `merchant.risk`
   in a `user` query): its value comes from the entity of that type whose id the row gives
   in `related` (no id -> the default, listed missing);
2. take fresh entities from the TTL-LRU cache, read the rest - of every entity type
   involved - in ONE pipelined Redis round trip (one HGETALL per distinct entity);
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
   entity read with an event time is observed in a histogram per entity type.

Use from one event loop; the assembler holds no per-request state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from predmesh.common.errors import InvalidArgument
from predmesh.featurestore.registry import Registry
from predmesh.featurestore.spec import FeatureGroup, FeatureSpec, Scalar, Source
from predmesh.featurestore.values import coerce, parse_stored, why_invalid
from services.features.core.cache import EntityCache
from services.features.core.store import EntityReader, StoredEntity
from services.features.errors import BadEntities, InvalidContextValue, UnknownFeature
from services.features.metrics import FeaturesMetrics


@dataclass(frozen=True, slots=True)
class EntityRequest:
    entity_id: str
    # Request-time values by feature name; `None` means "a value with no kind set".
    context: Mapping[str, Scalar | None] = field(default_factory=dict)
    # Ids of entities of other types (entity type -> id) whose `type.feature` values the query asks for.
    related: Mapping[str, str] = field(default_factory=dict)


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


@dataclass(frozen=True, slots=True)
class _Resolved:
    """One requested name: its spec, the entity type it is read from, its freshness limit."""

    name: str  # as requested (qualified for another entity type)
    spec: FeatureSpec
    entity_type: str
    primary: bool
    max_age_ms: float | None


_Key = tuple[str, str]  # (entity type, entity id)
_MAX_PLANS = 1024  # distinct (entity type, feature list) shapes kept resolved


@dataclass(frozen=True, slots=True)
class _Plan:
    """A resolved query shape: what to read for which entity type, and how to assemble each name."""

    entity_type: str
    group: FeatureGroup
    resolved: tuple[_Resolved, ...]
    fields: dict[str, list[str]]  # store fields to read, per entity type (the query's own type first)
    related_types: tuple[str, ...]  # other entity types with store fields in the query


class FeatureAssembler:
    """Builds validated feature vectors from the registry, a store and an optional cache."""

    def __init__(
        self,
        registry: Registry,
        store: EntityReader,
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
        # Resolved queries by (entity type, requested names): the registry is immutable, so a
        # query shape is resolved once (only valid ones are kept; bounded, cleared when full).
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}

    def describe(self, entity_type: str) -> FeatureGroup:
        return self._registry.group(entity_type)

    async def get_features(self, query: FeatureQuery) -> list[FeatureVector]:
        plan = self._plan(query.entity_type, query.features)
        entity_type = plan.entity_type
        self._check_entities(plan.group, query.entities)
        fields = plan.fields
        keys: dict[_Key, None] = {}
        for entity in query.entities:
            keys[(entity_type, entity.entity_id)] = None
            if plan.related_types and entity.related:
                for other in plan.related_types:
                    if other in entity.related:
                        keys[(other, entity.related[other])] = None
        stored = await self._read(list(keys), fields)
        now_ms = self._wall_clock() * 1000.0
        vectors = [_assemble(entity_type, plan.resolved, entity, stored, now_ms) for entity in query.entities]
        if self._metrics is not None:
            self._count(entity_type, vectors)
            self._observe_ages(stored, now_ms)
        return vectors

    def _plan(self, entity_type: str, names: Sequence[str]) -> _Plan:
        key = (entity_type, tuple(names))
        plan = self._plans.get(key)
        if plan is None:
            group = self._registry.group(entity_type)
            resolved = self._resolve(group, names)
            fields: dict[str, list[str]] = {}
            for r in resolved:
                if r.spec.source is Source.STORE:
                    stored_names = fields.setdefault(r.entity_type, [])
                    if r.spec.name not in stored_names:
                        stored_names.append(r.spec.name)
            related_types = tuple(t for t in fields if t != entity_type)
            plan = _Plan(entity_type, group, tuple(resolved), fields, related_types)
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _observe_ages(self, stored: Mapping[_Key, StoredEntity], now_ms: float) -> None:
        assert self._metrics is not None
        age_of = self._metrics.age_of
        for (entity_type, _id), entity in stored.items():
            if entity.event_time_ms is not None:
                age_of(entity_type).observe(max(0.0, now_ms - entity.event_time_ms) / 1000.0)

    def _count(self, entity_type: str, vectors: Sequence[FeatureVector]) -> None:
        assert self._metrics is not None
        m = self._metrics
        for vec in vectors:
            for name in vec.missing:
                m.default_used(entity_type, name, "missing").inc()
            for name in vec.invalid:
                m.default_used(entity_type, name, "invalid").inc()
            for name in vec.stale:
                m.default_used(entity_type, name, "stale").inc()
            if vec.entity_unknown:
                m.unknown_of(entity_type).inc()

    def _resolve(self, group: FeatureGroup, names: Sequence[str]) -> list[_Resolved]:
        if not names:
            raise InvalidArgument("features must name at least one feature")
        resolved = []
        for name in names:
            spec = group.get(name)
            owner = group
            if spec is None and "." in name:
                other, _, feature = name.partition(".")
                if other not in self._registry.entity_types:
                    raise UnknownFeature(f"feature {name!r}: entity type {other!r} is not registered")
                owner = self._registry.group(other)
                spec = owner.get(feature)
                if spec is not None and spec.source is not Source.STORE:
                    raise UnknownFeature(f"feature {name!r} is request-sourced: only store features of other types")
            if spec is None:
                raise UnknownFeature(f"feature {name!r} is not registered for entity type {group.entity_type!r}")
            max_age_s = owner.max_age_of(spec) if spec.source is Source.STORE else None
            resolved.append(
                _Resolved(
                    name,
                    spec,
                    owner.entity_type,
                    owner is group,
                    None if max_age_s is None else max_age_s * 1000.0,
                )
            )
        return resolved

    def _check_entities(self, group: FeatureGroup, entities: Sequence[EntityRequest]) -> None:
        if not entities:
            raise BadEntities("entities must hold at least one entity")
        if len(entities) > self._limits.max_entities:
            raise BadEntities(f"too many entities: {len(entities)} > {self._limits.max_entities}")
        max_length = self._limits.max_entity_id_length
        for index, entity in enumerate(entities):
            if not entity.entity_id:
                raise BadEntities(f"entities[{index}].entity_id is empty")
            if len(entity.entity_id) > max_length:
                raise BadEntities(f"entities[{index}].entity_id is longer than {max_length} characters")
            for entity_type, entity_id in entity.related.items():
                if entity_type not in self._registry.entity_types:
                    raise BadEntities(f"entities[{index}].related: entity type {entity_type[:64]!r} is not registered")
                if not entity_id or len(entity_id) > max_length:
                    raise BadEntities(
                        f"entities[{index}].related[{entity_type!r}] is empty or longer than {max_length} characters"
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

    async def _read(self, keys: Sequence[_Key], fields: Mapping[str, list[str]]) -> dict[_Key, StoredEntity]:
        """Stored entities by (type, id): from the cache when fresh, the rest in one round trip."""
        stored: dict[_Key, StoredEntity] = {}
        to_fetch: list[_Key] = []
        for key in keys:
            wanted = fields.get(key[0], [])
            cached = self._cache.get(key[0], key[1], wanted) if self._cache is not None else None
            if cached is not None:
                stored[key] = cached
            else:
                to_fetch.append(key)
        if self._metrics is not None:
            m = self._metrics
            for key in stored:
                m.entities_from(key[0], "cache").inc()
            for key in to_fetch:
                m.entities_from(key[0], "redis").inc()
        if to_fetch:
            fetched = await self._store.fetch_keys([(t, i, fields.get(t, [])) for t, i in to_fetch])
            for key, entity in zip(to_fetch, fetched, strict=True):
                stored[key] = entity
                if self._cache is not None:
                    self._cache.put(key[0], key[1], entity)
        return stored


_NOTHING = StoredEntity(exists=False, fields={})


def _assemble(
    entity_type: str,
    resolved: Sequence[_Resolved],
    entity: EntityRequest,
    stored: Mapping[_Key, StoredEntity],
    now_ms: float,
) -> FeatureVector:
    """One entity's vector; context values were validated by `_check_entities` already."""
    values: list[Scalar] = []
    missing: list[str] = []
    invalid: list[str] = []
    store_missing: list[str] = []
    stale: list[str] = []
    primary = stored[(entity_type, entity.entity_id)]
    for r in resolved:
        spec, name = r.spec, r.name
        if r.primary:
            source = primary
        else:
            related_id = entity.related.get(r.entity_type)
            source = stored[(r.entity_type, related_id)] if related_id is not None else _NOTHING
        raw = source.fields.get(spec.name) if spec.source is Source.STORE else None
        value: Scalar | None
        if r.primary and name in entity.context:
            value = coerce(spec, entity.context[name])
            bad = invalid
        elif (
            raw is not None
            and r.max_age_ms is not None
            and source.event_time_ms is not None
            and now_ms - source.event_time_ms > r.max_age_ms
        ):
            value = None
            bad = stale
        elif raw is not None:
            value = parse_stored(spec, raw)
            bad = invalid
        else:
            value = None
            bad = missing
        if value is None:
            value = spec.default
            if name not in bad:
                bad.append(name)
                if bad is missing and spec.source is Source.STORE:
                    store_missing.append(name)
        values.append(value)
    return FeatureVector(
        entity_id=entity.entity_id,
        values=values,
        missing=missing,
        invalid=invalid,
        entity_unknown=not primary.exists,
        store_missing=store_missing,
        stale=stale,
    )
