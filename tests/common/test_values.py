"""predmesh.common.values: Value <-> Python scalar (unit tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from predmesh.common.values import scalar_from_value, scalar_to_value
from predmesh.v1 import common_pb2


@pytest.mark.parametrize(
    ("value", "kind", "back"),
    [
        (1.5, "number_value", 1.5),
        (3, "number_value", 3.0),
        (-0.0, "number_value", -0.0),
        (np.float32(0.5), "number_value", 0.5),
        (np.int64(7), "number_value", 7.0),
        ("x", "string_value", "x"),
        ("", "string_value", ""),
        ("1.5", "string_value", "1.5"),
        (True, "bool_value", True),
        (False, "bool_value", False),
    ],
)
def test_roundtrip(value: object, kind: str, back: object) -> None:
    message = scalar_to_value(value)  # type: ignore[arg-type]
    assert message.WhichOneof("kind") == kind
    got = scalar_from_value(message)
    assert got == back
    assert type(got) is type(back)


def test_bool_is_not_a_number() -> None:
    """bool is an int subclass: it must still travel as bool_value, and come back a bool."""
    assert scalar_to_value(True) == common_pb2.Value(bool_value=True)
    assert scalar_to_value(False) == common_pb2.Value(bool_value=False)
    assert scalar_to_value(1) == common_pb2.Value(number_value=1.0)
    assert scalar_from_value(common_pb2.Value(number_value=1.0)) is not True


def test_an_unset_value_reads_as_none() -> None:
    assert scalar_from_value(common_pb2.Value()) is None


def test_a_set_default_is_not_unset() -> None:
    """0.0, "" and False are set values (proto3 oneof keeps presence)."""
    assert scalar_from_value(common_pb2.Value(number_value=0.0)) == 0.0
    assert scalar_from_value(common_pb2.Value(string_value="")) == ""
    assert scalar_from_value(common_pb2.Value(bool_value=False)) is False


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_pass_through(number: float) -> None:
    message = scalar_to_value(number)
    assert message.WhichOneof("kind") == "number_value"
    got = scalar_from_value(message)
    assert isinstance(got, float)
    assert got == number or (math.isnan(number) and math.isnan(got))


@pytest.mark.parametrize("value", [None, object(), [1.0]])
def test_not_a_scalar_raises(value: object) -> None:
    with pytest.raises(TypeError):
        scalar_to_value(value)  # type: ignore[arg-type]
