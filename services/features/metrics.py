"""Prometheus metrics of the features service, on the registry its GrpcServer exposes at /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

# Ages of stored features: seconds to weeks.
AGE_BUCKETS_S = (1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400, float("inf"))
# Sizes of coalesced Redis reads.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, float("inf"))


class FeaturesMetrics:
    """Counters the assembler updates; thread-safe (prometheus_client). One instance per app.

    The `*_of`/`*_from`/`default_used` methods return label children bound once per label set
    (a dict lookup per call instead of prometheus_client's `labels()`); the label sets are
    bounded by the registry (entity types, feature names, three reasons).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.defaults_used = Counter(
            "predmesh_features_defaults_used",
            "Feature values replaced by their registered default, by reason (missing, invalid or stale).",
            ["entity_type", "feature", "reason"],
            registry=r,
        )
        self.entities = Counter(
            "predmesh_features_entities",
            "Entities assembled, by where their stored values came from (cache or redis).",
            ["entity_type", "source"],
            registry=r,
        )
        self.unknown_entities = Counter(
            "predmesh_features_unknown_entities",
            "Entities with no stored hash (every store feature defaulted).",
            ["entity_type"],
            registry=r,
        )
        self.read_batch_calls = Histogram(
            "predmesh_features_redis_read_calls",
            "GetFeatures calls served by one coalesced Redis read (calls per read).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.read_batch_entities = Histogram(
            "predmesh_features_redis_read_entities",
            "Entities in one coalesced Redis read (entities per read).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.age = Histogram(
            "predmesh_features_age_seconds",
            "Age of the stored features read (now minus the entity's stored event time), per entity type.",
            ["entity_type"],
            buckets=AGE_BUCKETS_S,
            registry=r,
        )
        self._bound: dict[tuple[Any, ...], Any] = {}

    def entities_from(self, entity_type: str, source: str) -> Any:
        """The `entities` counter child of (entity_type, source)."""
        return _child(self._bound, self.entities, entity_type, source)

    def default_used(self, entity_type: str, feature: str, reason: str) -> Any:
        """The `defaults_used` counter child of (entity_type, feature, reason)."""
        return _child(self._bound, self.defaults_used, entity_type, feature, reason)

    def unknown_of(self, entity_type: str) -> Any:
        return _child(self._bound, self.unknown_entities, entity_type)

    def age_of(self, entity_type: str) -> Any:
        return _child(self._bound, self.age, entity_type)

    def observe_read(self, calls: int, entities: int) -> None:
        """One coalesced Redis read of `entities` entities for `calls` GetFeatures calls."""
        self.read_batch_calls.observe(calls)
        self.read_batch_entities.observe(entities)


def _child(bound: dict[tuple[Any, ...], Any], metric: Any, *labels: str) -> Any:
    key = (id(metric), *labels)
    child = bound.get(key)
    if child is None:
        child = bound[key] = metric.labels(*labels)
    return child
