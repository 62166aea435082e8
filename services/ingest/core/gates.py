"""Quality gates of the ingestion service: one `FeatureEvent` in, `Accepted` or `Rejected` out.

Hard gates reject the whole event (nothing of it is written) with a reason from `REASONS`
(a fixed vocabulary: it is a metric label and the dead-letter header):

- `unknown_entity_type`, `bad_entity_id` (empty or too long), `missing_event_time`,
  `future_event_time` (more than `max_future_s` ahead of the wall clock: such an event would
  block every later update of the entity), `no_values`, `unknown_feature`,
  `not_a_store_feature` (request-sourced features are never stored), `invalid_value`
  (wrong type, NaN/inf, outside [min, max], not a registered category, no value set).

Distribution checks warn and count but never reject: a numeric value outside the registry's
[p5, p95] reference (`below_p5`, `above_p95`), a category outside `common`
(`uncommon_category`). About 10% of healthy numeric values fall outside [p5, p95]; the
ratio of warnings to checked values is what an alert should watch.

Pure and thread-safe (the registry is immutable); the wall clock is injectable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from predmesh.featurestore.registry import Registry
from predmesh.featurestore.spec import DType, FeatureSpec, Scalar, Source
from predmesh.featurestore.values import coerce, encode, why_invalid

REASONS = (
    "undecodable",
    "unknown_entity_type",
    "bad_entity_id",
    "missing_event_time",
    "future_event_time",
    "no_values",
    "unknown_feature",
    "not_a_store_feature",
    "invalid_value",
)


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """A decoded `FeatureEvent`; `event_time_ms` is None when the event has none."""

    entity_type: str
    entity_id: str
    event_time_ms: int | None
    values: Mapping[str, Scalar | None]


@dataclass(frozen=True, slots=True)
class Accepted:
    """An event that passed the gates: values already in their stored text form."""

    entity_type: str
    entity_id: str
    event_time_ms: int
    values: Mapping[str, str]
    # (feature, check) for each distribution check that warned.
    warnings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str  # one of REASONS
    detail: str  # human-readable, names the offending field; never holds secrets
    entity_type: str = ""
    entity_id: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


class QualityGates:
    """Checks events against the feature registry (see the module docstring)."""

    def __init__(
        self,
        registry: Registry,
        max_entity_id_length: int = 256,
        max_future_s: float = 300.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._max_id = max_entity_id_length
        self._max_future_ms = max_future_s * 1000.0
        self._wall_clock = wall_clock

    def check(self, event: IncomingEvent) -> Accepted | Rejected:
        def reject(reason: str, detail: str) -> Rejected:
            return Rejected(reason, detail, event.entity_type, event.entity_id)

        if event.entity_type not in self._registry.entity_types:
            return reject("unknown_entity_type", f"entity type {event.entity_type[:64]!r} is not registered")
        group = self._registry.group(event.entity_type)
        if not event.entity_id or len(event.entity_id) > self._max_id:
            return reject("bad_entity_id", f"entity id is empty or longer than {self._max_id} characters")
        if event.event_time_ms is None or event.event_time_ms <= 0:
            return reject("missing_event_time", "event_time is not set")
        if event.event_time_ms > self._wall_clock() * 1000.0 + self._max_future_ms:
            return reject("future_event_time", f"event_time is more than {self._max_future_ms / 1000:.0f}s ahead")
        if not event.values:
            return reject("no_values", "the event holds no values")
        encoded: dict[str, str] = {}
        warnings: list[tuple[str, str]] = []
        for name, value in event.values.items():
            spec = group.get(name)
            if spec is None:
                return reject("unknown_feature", f"{name[:64]!r} is not a feature of {group.entity_type!r}")
            if spec.source is not Source.STORE:
                return reject("not_a_store_feature", f"{name!r} is request-sourced and never stored")
            checked = coerce(spec, value)
            text = encode(spec, checked) if checked is not None else None
            if checked is None or text is None:
                return reject("invalid_value", f"{name}: {why_invalid(spec, value)}")
            encoded[name] = text
            check = distribution_check(spec, checked)
            if check is not None:
                warnings.append((name, check))
        return Accepted(event.entity_type, event.entity_id, event.event_time_ms, encoded, tuple(warnings))


def distribution_check(spec: FeatureSpec, value: Scalar) -> str | None:
    """The distribution check a valid value fails (`below_p5`, `above_p95`, `uncommon_category`), if any."""
    if spec.dtype is DType.CATEGORY:
        return "uncommon_category" if spec.common and value not in spec.common else None
    if spec.dtype in (DType.FLOAT, DType.INT) and not isinstance(value, str):
        number = float(value)
        if spec.p5 is not None and number < spec.p5:
            return "below_p5"
        if spec.p95 is not None and number > spec.p95:
            return "above_p95"
    return None
