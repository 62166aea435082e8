"""Plain-JSON context (google.protobuf.Struct) next to the typed map, and the degraded metadata."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from predmesh.v1 import common_pb2
from services.gateway.errors import InvalidArgument
from services.gateway.transport.converters import context_from_pb
from services.gateway.transport.servicer import degraded_metadata


def plain(values: dict[str, object]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def test_plain_scalars_read_like_typed_values() -> None:
    typed = {"amount": common_pb2.Value(number_value=120.5), "channel": common_pb2.Value(string_value="web")}
    assert context_from_pb(typed) == context_from_pb({}, plain({"amount": 120.5, "channel": "web"}))
    assert context_from_pb({}, plain({"vip": True, "hour": 3})) == {"vip": True, "hour": 3.0}


def test_a_plain_value_written_the_typed_way_is_still_read() -> None:
    assert context_from_pb({}, plain({"amount": {"number_value": 50}, "c": {"string_value": "x"}})) == {
        "amount": 50.0,
        "c": "x",
    }


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "null"), ([1, 2], "a list"), ({"x": 1}, "an object"), ({"number_value": "5"}, "an object")],
)
def test_a_plain_value_that_is_not_a_scalar_is_invalid_argument(value: object, shown: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"context\['amount'\]: .*got {shown}"):
        context_from_pb({}, plain({"amount": value}))


def test_a_name_given_both_ways_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="both"):
        context_from_pb({"amount": common_pb2.Value(number_value=1)}, plain({"amount": 2}))


def test_a_plain_nan_is_refused_like_a_typed_one() -> None:
    with pytest.raises(InvalidArgument, match="finite"):
        context_from_pb({}, plain({"amount": float("nan")}))


def test_degraded_metadata_only_when_degraded() -> None:
    assert degraded_metadata([]) == ()
    assert degraded_metadata(["features_missing", "features_missing", "timeout: served by fraud_ctx\n"]) == (
        ("x-prediction-degraded", "true"),
        ("x-prediction-degraded-reason", "features_missing; timeout: served by fraud_ctx?"),
    )
