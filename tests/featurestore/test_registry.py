"""Registry parsing and validation (unit tests, no I/O besides tmp files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from predmesh.demo import FEATURE_REGISTRY
from predmesh.featurestore.errors import RegistryError, UnknownEntityType
from predmesh.featurestore.registry import load_registry, parse_registry
from predmesh.featurestore.spec import DType, Source


def _registry(**feature: Any) -> dict[str, Any]:
    return {"entities": {"user": {"features": {"f": feature}}}}


def test_demo_registry_loads_with_typed_defaults() -> None:
    registry = load_registry(FEATURE_REGISTRY)
    group = registry.group("user")
    assert [s.name for s in group.store_features] == [
        "account_age_days",
        "txn_count_7d",
        "avg_txn_amount_30d",
        "chargeback_rate_90d",
        "country",
        "is_verified",
    ]
    country = group.get("country")
    assert country is not None
    assert country.dtype is DType.CATEGORY and country.default == "other"
    assert country.category_order == ("US", "GB", "DE", "FR", "IN", "BR", "other")
    txn = group.get("txn_count_7d")
    assert txn is not None and txn.default == 5 and isinstance(txn.default, int)
    assert txn.min == 0 and txn.max == 100000
    verified = group.get("is_verified")
    assert verified is not None and verified.default is False
    amount = group.get("amount")
    assert amount is not None and amount.source is Source.REQUEST and amount.default == 0.0


def test_unknown_entity_type_is_not_found() -> None:
    registry = load_registry(FEATURE_REGISTRY)
    with pytest.raises(UnknownEntityType, match="shop"):
        registry.group("shop")


def test_float_default_from_yaml_int_becomes_float() -> None:
    spec = parse_registry(_registry(dtype="float", source="store", default=3)).group("user").get("f")
    assert spec is not None and spec.default == 3.0 and isinstance(spec.default, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "top level must be a mapping"),
        ({"entities": {}}, "non-empty mapping"),
        ({"entities": {"user": {}}}, "must be a mapping with key 'features'"),
        ({"entities": {"us:er": {"features": {"f": {}}}}}, "entity type must match"),
        ({"groups": {}}, "unknown top-level keys"),
        (_registry(dtype="double", source="store", default=1.0), "dtype 'double'"),
        (_registry(dtype="float", source="disk", default=1.0), "source 'disk'"),
        (_registry(dtype="float", default=1.0), "'source' is required"),
        (_registry(dtype="float", source="store"), "'default' is required"),
        (_registry(dtype="float", source="store", default=1.0, unit="s"), "unknown keys"),
        (_registry(dtype="float", source="store", default=5.0, min=0, max=1), "default 5.0 is not a valid"),
        (_registry(dtype="float", source="store", default=0.5, min=2, max=1), "min 2.0 is greater than max"),
        (_registry(dtype="float", source="store", default="x"), "default 'x'"),
        (_registry(dtype="int", source="store", default=1.5), "default 1.5"),
        (_registry(dtype="int", source="store", default=True), "default True"),
        (_registry(dtype="bool", source="store", default=1), "default 1"),
        (_registry(dtype="bool", source="store", default=False, min=0), "applies to float/int"),
        (_registry(dtype="category", source="store", default="a"), "non-empty 'categories'"),
        (_registry(dtype="category", source="store", default="c", categories=["a", "b"]), "default 'c'"),
        (_registry(dtype="category", source="store", default="a", categories=["a", "a"]), "duplicates"),
        (_registry(dtype="category", source="store", default="a", categories=["a", False]), "quote it"),
        (_registry(dtype="float", source="store", default=1.0, categories=["a"]), "category features only"),
        (_registry(dtype="float", source="store", default=1.0, max="big"), "finite number"),
        ({"entities": {"user": {"features": {"bad-name": {}}}}}, "feature name must match"),
    ],
)
def test_bad_registry_is_rejected_with_location(data: Any, message: str) -> None:
    with pytest.raises(RegistryError, match=message) as info:
        parse_registry(data, origin="reg.yaml")
    assert str(info.value).startswith("reg.yaml:")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("entities: [unclosed\n")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(broken)
    # YAML 1.1 reads an unquoted `no` as a boolean: the error says to quote it.
    norway = tmp_path / "norway.yaml"
    norway.write_text(
        "entities:\n  user:\n    features:\n"
        "      country: {dtype: category, source: store, default: US, categories: [US, no]}\n"
    )
    with pytest.raises(RegistryError, match=r"entities\.user\.features\.country: category False"):
        load_registry(norway)
