"""Canonical hash of a feature vector, for the prediction log."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from services.gateway.core.types import Scalar


def features_hash(names: Sequence[str], values: Sequence[Scalar]) -> str:
    """Hex SHA-256 of (name, typed value) pairs in model order.

    Types are tagged so 1.0, "1" and True hash differently; floats are hashed as IEEE-754
    doubles so the hash does not depend on text formatting.
    """
    parts: list[bytes] = []  # hashed in one call: the same digest as updating part by part
    append = parts.append
    for name, value in zip(names, values, strict=True):
        append(name.encode())
        if isinstance(value, bool):
            append(b"\x00b\x01" if value else b"\x00b\x00")
        elif isinstance(value, str):
            raw = value.encode()
            append(b"\x00s" + _LENGTH.pack(len(raw)))
            append(raw)
        else:
            append(b"\x00f" + _DOUBLE.pack(float(value)))
    return hashlib.sha256(b"".join(parts)).hexdigest()


_LENGTH = struct.Struct(">I")
_DOUBLE = struct.Struct(">d")
