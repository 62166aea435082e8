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
    digest = hashlib.sha256()
    for name, value in zip(names, values, strict=True):
        digest.update(name.encode())
        digest.update(b"\x00")
        if isinstance(value, bool):
            digest.update(b"b" + (b"\x01" if value else b"\x00"))
        elif isinstance(value, str):
            raw = value.encode()
            digest.update(b"s" + struct.pack(">I", len(raw)) + raw)
        else:
            digest.update(b"f" + struct.pack(">d", float(value)))
    return digest.hexdigest()
