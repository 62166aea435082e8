"""predmesh.v1.Value <-> Python scalar, the one mapping every service's converters use.

A `Value` holds one of `number_value` (double), `string_value` or `bool_value`, or
nothing. Reading gives float / str / bool (`None` when no kind is set); writing checks
`bool` before numbers (a bool is an int in Python) and turns every other number into a
float, NaN and infinities included. What an unset Value means (an error, a missing
feature) is the caller's decision, so nothing here raises for it.

Pure functions without state: safe from any thread or event loop.
"""

from __future__ import annotations

from predmesh.v1 import common_pb2

Scalar = float | int | bool | str
"""What `scalar_to_value` accepts."""

WireScalar = float | bool | str
"""What `scalar_from_value` returns for a set Value (numbers are always floats)."""


def scalar_from_value(value: common_pb2.Value) -> WireScalar | None:
    """number -> float, string -> str, bool -> bool; `None` when no kind is set."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def scalar_to_value(value: Scalar) -> common_pb2.Value:
    """bool -> bool_value, str -> string_value, anything else -> number_value as `float(value)`.

    Raises what `float()` raises for something that is not a number (TypeError, ValueError).
    """
    if isinstance(value, bool):
        return common_pb2.Value(bool_value=value)
    if isinstance(value, str):
        return common_pb2.Value(string_value=value)
    return common_pb2.Value(number_value=float(value))
