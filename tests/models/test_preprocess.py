from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from predmesh.common.errors import InvalidArgument
from predmesh.models.preprocess import Preprocessor
from predmesh.models.spec import parse_spec

from .builders import regressor_spec


def pre(*inputs: dict[str, Any]) -> Preprocessor:
    return Preprocessor(parse_spec(regressor_spec(inputs=list(inputs))))


def test_identity_accepts_ints_and_floats() -> None:
    out = pre({"name": "x", "transform": "identity"}).transform_rows(["x"], [[1], [2.5], [-3.0]])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1.0], [2.5], [-3.0]])


def test_log1p() -> None:
    out = pre({"name": "x", "transform": "log1p"}).transform_rows(["x"], [[0.0], [math.e - 1], [99]])
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, math.log(100)], rtol=1e-6)


def test_log1p_rejects_values_outside_its_domain() -> None:
    with pytest.raises(InvalidArgument, match=r"feature 'x': row 1 is <= -1"):
        pre({"name": "x", "transform": "log1p"}).transform_rows(["x"], [[0.0], [-1.0]])


def test_standardize() -> None:
    p = pre({"name": "x", "transform": {"type": "standardize", "mean": 10.0, "std": 4.0}})
    np.testing.assert_allclose(p.transform_rows(["x"], [[10.0], [18.0], [6]])[:, 0], [0.0, 2.0, -1.0])


def test_bool() -> None:
    out = pre({"name": "b", "transform": "bool"}).transform_rows(["b"], [[True], [False]])
    np.testing.assert_array_equal(out, [[1.0], [0.0]])


def test_onehot_unknown_maps_to_all_zeros_without_other() -> None:
    p = pre({"name": "c", "transform": {"type": "onehot", "categories": ["web", "app", "pos"]}})
    out = p.transform_rows(["c"], [["app"], ["kiosk"], ["web"], ["pos"]])
    np.testing.assert_array_equal(out, [[0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]])


def test_onehot_unknown_maps_to_the_other_slot() -> None:
    p = pre({"name": "c", "transform": {"type": "onehot", "categories": ["US", "other", "GB"], "other": "other"}})
    out = p.transform_rows(["c"], [["GB"], ["XX"], ["other"], ["US"]])
    np.testing.assert_array_equal(out, [[0, 0, 1], [0, 1, 0], [0, 1, 0], [1, 0, 0]])


def test_columns_follow_model_order_not_request_order_and_extras_are_ignored() -> None:
    p = pre(
        {"name": "a", "transform": "identity"},
        {"name": "c", "transform": {"type": "onehot", "categories": ["x", "y"]}},
        {"name": "b", "transform": "bool"},
    )
    out = p.transform_rows(["b", "extra", "c", "a"], [[True, "ignored", "y", 7.0], [False, None, "x", 1]])
    np.testing.assert_array_equal(out, [[7, 0, 1, 1], [1, 1, 0, 0]])
    assert p.width == 4


def test_missing_feature_names_the_feature() -> None:
    p = pre({"name": "a"}, {"name": "b"})
    with pytest.raises(InvalidArgument, match=r"missing required feature 'b'"):
        p.transform_rows(["a"], [[1.0]])


@pytest.mark.parametrize(
    ("transform", "value", "message"),
    [
        ("identity", "12", r"feature 'x': row 1 has a string value, expected a number"),
        ("identity", True, r"feature 'x': row 1 has a bool value, expected a number"),
        ("log1p", None, r"feature 'x': row 1 has no value"),
        ("bool", 1.0, r"feature 'x': row 1 has a number value, expected a bool"),
        ("bool", "true", r"feature 'x': row 1 has a string value, expected a bool"),
        (
            {"type": "onehot", "categories": ["a"]},
            3.0,
            r"feature 'x': row 1 has a number value, expected a string",
        ),
        ("identity", float("nan"), r"feature 'x': row 1 is not a finite number"),
        ("identity", float("inf"), r"feature 'x': row 1 is not a finite number"),
    ],
)
def test_wrong_typed_values_name_feature_and_row(transform: Any, value: Any, message: str) -> None:
    good = "a" if isinstance(transform, dict) else (True if transform == "bool" else 1.0)
    with pytest.raises(InvalidArgument, match=message):
        pre({"name": "x", "transform": transform}).transform_rows(["x"], [[good], [value]])


def test_row_width_and_duplicate_names_are_rejected() -> None:
    p = pre({"name": "a"})
    with pytest.raises(InvalidArgument, match="row 1 has 2 values, expected 1"):
        p.transform_rows(["a"], [[1.0], [1.0, 2.0]])
    with pytest.raises(InvalidArgument, match="feature 'a' is named twice"):
        p.transform_rows(["a", "a"], [[1.0, 2.0]])


def test_transform_columns_matches_transform_rows() -> None:
    p = pre(
        {"name": "a", "transform": "log1p"},
        {"name": "c", "transform": {"type": "onehot", "categories": ["x"]}},
    )
    rows = [[float(i), "x" if i % 2 else "z"] for i in range(20)]
    by_rows = p.transform_rows(["a", "c"], rows)
    by_columns = p.transform_columns({"a": [r[0] for r in rows], "c": [r[1] for r in rows]})
    np.testing.assert_array_equal(by_rows, by_columns)
