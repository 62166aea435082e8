"""The feature registry: one `FeatureGroup` per entity type, loaded from YAML.

File format (see predmesh/demo/features.yaml)::

    entities:
      user:
        max_age_s: 86400          # optional: stored values older than this are served as defaults
        features:
          country: {dtype: category, source: store, default: other, categories: [US, other]}
          amount:  {dtype: float, source: request, default: 0.0, min: 0, max: 1000000}
          spend:   {dtype: float, source: store, default: 0.0, min: 0, max_age_s: 3600, p5: 1, p95: 900}

`max_age_s` (group or feature, seconds) is the freshness limit; `p5`/`p95` (numeric) and
`common` (categories) are the distribution reference of the ingestion quality gates.

The file is validated as a whole at load; any problem raises `RegistryError` naming
the file and the offending entry. A `Registry` is immutable once built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from predmesh.featurestore.errors import RegistryError, UnknownEntityType
from predmesh.featurestore.spec import DType, FeatureGroup, FeatureSpec, Scalar, Source
from predmesh.featurestore.values import coerce

# Entity types and feature names become parts of Redis keys / hash fields: keep them plain.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENTITY_TYPE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_FEATURE_KEYS = frozenset(
    {"dtype", "source", "default", "min", "max", "categories", "max_age_s", "p5", "p95", "common"}
)
_GROUP_KEYS = frozenset({"features", "max_age_s"})


class Registry:
    """Registered feature groups by entity type."""

    def __init__(self, groups: Mapping[str, FeatureGroup]) -> None:
        self._groups = dict(groups)

    def group(self, entity_type: str) -> FeatureGroup:
        """The group of `entity_type`; raises `UnknownEntityType` (NOT_FOUND) if none."""
        group = self._groups.get(entity_type)
        if group is None:
            known = ", ".join(sorted(self._groups)) or "none"
            raise UnknownEntityType(f"unknown entity type {entity_type!r} (registered: {known})")
        return group

    @property
    def entity_types(self) -> tuple[str, ...]:
        return tuple(self._groups)

    def __iter__(self) -> Iterator[FeatureGroup]:
        return iter(self._groups.values())


def load_registry(path: str | Path) -> Registry:
    """Read and validate a registry file (blocking file I/O: call from a thread in async code)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RegistryError(f"{path}: cannot read registry: {err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RegistryError(f"{path}: not valid YAML: {err}") from err
    return parse_registry(data, origin=str(path))


def parse_registry(data: Any, origin: str = "<registry>") -> Registry:
    """Validate already-parsed YAML/JSON data and build a `Registry`."""
    if not isinstance(data, Mapping):
        raise RegistryError(f"{origin}: top level must be a mapping with an 'entities' key")
    extra = set(data) - {"entities"}
    if extra:
        raise RegistryError(f"{origin}: unknown top-level keys {sorted(map(str, extra))}")
    entities = data.get("entities")
    if not isinstance(entities, Mapping) or not entities:
        raise RegistryError(f"{origin}: 'entities' must be a non-empty mapping of entity type -> group")
    groups: dict[str, FeatureGroup] = {}
    for entity_type, body in entities.items():
        where = f"{origin}: entities.{entity_type}"
        if not isinstance(entity_type, str) or not _ENTITY_TYPE.fullmatch(entity_type):
            raise RegistryError(f"{where}: entity type must match {_ENTITY_TYPE.pattern}")
        if not isinstance(body, Mapping) or "features" not in body or set(body) - _GROUP_KEYS:
            raise RegistryError(f"{where}: must be a mapping with key 'features' (and optionally 'max_age_s')")
        group_max_age = _max_age(body.get("max_age_s"), where) if "max_age_s" in body else None
        features = body["features"]
        if not isinstance(features, Mapping) or not features:
            raise RegistryError(f"{where}.features: must be a non-empty mapping of name -> spec")
        specs = tuple(_parse_feature(name, raw, f"{where}.features.{name}") for name, raw in features.items())
        groups[entity_type] = FeatureGroup(entity_type=entity_type, features=specs, max_age_s=group_max_age)
    return Registry(groups)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _max_age(raw: Any, where: str) -> float:
    if not _is_number(raw) or not math.isfinite(raw) or raw <= 0:
        raise RegistryError(f"{where}: 'max_age_s' must be a positive number of seconds, got {raw!r}")
    return float(raw)


def _parse_reference(raw: Any, dtype: DType, order: tuple[str, ...], where: str) -> dict[str, Any]:
    """The distribution reference keys (p5, p95, common) of one feature, validated."""
    ref: dict[str, Any] = {"p5": None, "p95": None, "common": frozenset()}
    for key in ("p5", "p95"):
        if key in raw:
            if dtype not in (DType.FLOAT, DType.INT):
                raise RegistryError(f"{where}: '{key}' applies to float/int features only")
            if not _is_number(raw[key]) or not math.isfinite(raw[key]):
                raise RegistryError(f"{where}: '{key}' must be a finite number, got {raw[key]!r}")
            ref[key] = float(raw[key])
    if ref["p5"] is not None and ref["p95"] is not None and ref["p5"] > ref["p95"]:
        raise RegistryError(f"{where}: p5 {ref['p5']} is greater than p95 {ref['p95']}")
    if "common" in raw:
        common = raw["common"]
        if dtype is not DType.CATEGORY:
            raise RegistryError(f"{where}: 'common' applies to category features only")
        if not isinstance(common, list) or not common or any(c not in order for c in common):
            raise RegistryError(f"{where}: 'common' must be a non-empty list of registered categories")
        ref["common"] = frozenset(common)
    return ref


def _parse_feature(name: Any, raw: Any, where: str) -> FeatureSpec:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistryError(f"{where}: feature name must match {_NAME.pattern}")
    if not isinstance(raw, Mapping):
        raise RegistryError(f"{where}: spec must be a mapping")
    unknown = set(raw) - _FEATURE_KEYS
    if unknown:
        raise RegistryError(f"{where}: unknown keys {sorted(map(str, unknown))} (allowed: {sorted(_FEATURE_KEYS)})")
    for key in ("dtype", "source", "default"):
        if key not in raw:
            raise RegistryError(f"{where}: '{key}' is required")
    try:
        dtype = DType(raw["dtype"])
    except ValueError:
        raise RegistryError(f"{where}: dtype {raw['dtype']!r} is not one of {[d.value for d in DType]}") from None
    try:
        source = Source(raw["source"])
    except ValueError:
        raise RegistryError(f"{where}: source {raw['source']!r} is not one of {[s.value for s in Source]}") from None

    bounds: dict[str, float | None] = {"min": None, "max": None}
    for key in ("min", "max"):
        if key in raw:
            if dtype not in (DType.FLOAT, DType.INT):
                raise RegistryError(f"{where}: '{key}' applies to float/int features only")
            if not _is_number(raw[key]) or not math.isfinite(raw[key]):
                raise RegistryError(f"{where}: '{key}' must be a finite number, got {raw[key]!r}")
            bounds[key] = float(raw[key])
    low, high = bounds["min"], bounds["max"]
    if low is not None and high is not None and low > high:
        raise RegistryError(f"{where}: min {low} is greater than max {high}")

    order: tuple[str, ...] = ()
    if dtype is DType.CATEGORY:
        cats = raw.get("categories")
        if not isinstance(cats, list) or not cats:
            raise RegistryError(f"{where}: category features need a non-empty 'categories' list")
        for cat in cats:
            if not isinstance(cat, str) or not cat:
                # YAML 1.1 reads yes/no/on/off as booleans: say so.
                raise RegistryError(f"{where}: category {cat!r} must be a non-empty string (quote it in YAML)")
        if len(set(cats)) != len(cats):
            raise RegistryError(f"{where}: categories contain duplicates")
        order = tuple(cats)
    elif "categories" in raw:
        raise RegistryError(f"{where}: 'categories' applies to category features only")

    draft = FeatureSpec(
        name=name,
        dtype=dtype,
        source=source,
        default="",
        min=low,
        max=high,
        categories=frozenset(order),
        category_order=order,
    )
    default = _parse_default(draft, raw["default"], where)
    max_age = _max_age(raw["max_age_s"], where) if "max_age_s" in raw else None
    if max_age is not None and source is not Source.STORE:
        raise RegistryError(f"{where}: 'max_age_s' applies to store features only")
    return FeatureSpec(
        name=name,
        dtype=dtype,
        source=source,
        default=default,
        min=low,
        max=high,
        categories=frozenset(order),
        category_order=order,
        max_age_s=max_age,
        **_parse_reference(raw, dtype, order, where),
    )


def _parse_default(spec: FeatureSpec, raw: Any, where: str) -> Scalar:
    kind_ok = {
        DType.FLOAT: _is_number(raw),
        DType.INT: _is_number(raw) and float(raw).is_integer(),
        DType.BOOL: isinstance(raw, bool),
        DType.CATEGORY: isinstance(raw, str),
    }[spec.dtype]
    value = coerce(spec, raw) if kind_ok else None
    if value is None:
        raise RegistryError(
            f"{where}: default {raw!r} is not a valid {spec.dtype.value} value for this feature"
            " (check its type, min/max and categories)"
        )
    return value
