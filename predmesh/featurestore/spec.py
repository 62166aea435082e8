"""Feature specifications: the typed entries of the feature registry.

Immutable value objects; safe to share between tasks and threads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# A domain feature value: float/int for numeric dtypes, bool, or a category string.
Scalar = float | int | bool | str


class DType(enum.StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    CATEGORY = "category"


class Source(enum.StrEnum):
    STORE = "store"  # read from the Redis hash features:{entity_type}:{entity_id}
    REQUEST = "request"  # supplied by the caller in the request context


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One registered feature.

    `default` already has the dtype's Python type (float, int, bool or str) and passes
    validation. `min`/`max` apply to numeric dtypes only, `categories` to categories only.
    """

    name: str
    dtype: DType
    source: Source
    default: Scalar
    min: float | None = None
    max: float | None = None
    categories: frozenset[str] = field(default_factory=frozenset)
    # Categories in registry order (for DescribeGroup); `categories` is for lookups.
    category_order: tuple[str, ...] = ()
    # Freshness: a stored value whose entity event time is older than this is served as the
    # default and listed `stale` (seconds; None = the group's `max_age_s`, or no limit).
    max_age_s: float | None = None
    # Distribution reference for the ingestion quality gates (warn and count, never reject):
    # numeric values outside [p5, p95], categories outside `common`.
    p5: float | None = None
    p95: float | None = None
    common: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class FeatureGroup:
    """The features registered for one entity type, in registry order."""

    entity_type: str
    features: tuple[FeatureSpec, ...]
    # Default freshness limit of the group's store features (seconds; None = no limit).
    max_age_s: float | None = None
    _by_name: dict[str, FeatureSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {spec.name: spec for spec in self.features})

    def get(self, name: str) -> FeatureSpec | None:
        return self._by_name.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def max_age_of(self, spec: FeatureSpec) -> float | None:
        """The freshness limit of `spec` (its own, else the group's), in seconds; None = no limit."""
        return spec.max_age_s if spec.max_age_s is not None else self.max_age_s

    @property
    def store_features(self) -> tuple[FeatureSpec, ...]:
        return tuple(spec for spec in self.features if spec.source is Source.STORE)
