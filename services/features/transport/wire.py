"""GetFeaturesResponse written directly in protobuf wire format (bytes), for the hot path.

Building a `GetFeaturesResponse` (one `Value` message per feature value) and serializing it
cost the features service more CPU per call than the rest of the assembly (upb message
construction from Python, ~40-70 us per 1-entity response on the benchmark box). The
response shape is small and fixed (`protos/predmesh/v1/features.proto`), so
`encode_response` writes the same bytes `GetFeaturesResponse.SerializeToString()` would:
fields in field-number order, proto3 implicit presence (empty strings, empty lists and
false are omitted), every `Value` with its one `kind` set (set even when 0/false/"",
as a oneof member is). The servicer returns these bytes and the method is registered
without a response serializer; clients see an ordinary `GetFeaturesResponse`.
`tests/features/transport/test_wire.py` checks byte equality with protobuf over many responses.

Pure functions; the name caches are bounded by the registry's names.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from services.features.core.assembler import FeatureVector

_DOUBLE = struct.Struct("<d").pack
# Value inside FeatureVector.values (field 2, length-delimited):
_NUMBER_PREFIX = b"\x12\x09\x09"  # values, 9 bytes, number_value (field 1, 64-bit)
_TRUE = b"\x12\x02\x18\x01"  # values, 2 bytes, bool_value (field 3, varint) = 1
_FALSE = b"\x12\x02\x18\x00"
_UNKNOWN = b"\x28\x01"  # entity_unknown (field 5) = true

# Tags of FeatureVector's repeated string fields.
_MISSING, _INVALID, _STORE_MISSING, _STALE = 0x1A, 0x22, 0x32, 0x3A
_ENTITY_ID, _VECTORS = 0x0A, 0x0A

_MAX_CACHED = 4096
_strings: dict[tuple[int, str], bytes] = {}  # (tag, text) -> tag + length + UTF-8
_categories: dict[str, bytes] = {}  # category value -> its encoded Value entry


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, text: str) -> bytes:
    data = text.encode()
    return bytes((tag,)) + varint(len(data)) + data


def _name(tag: int, text: str) -> bytes:
    """A cached string field (feature names repeat on every call)."""
    key = (tag, text)
    encoded = _strings.get(key)
    if encoded is None:
        encoded = _field(tag, text)
        if len(_strings) < _MAX_CACHED:
            _strings[key] = encoded
    return encoded


def _string_value(text: str) -> bytes:
    encoded = _categories.get(text)
    if encoded is None:
        inner = _field(0x12, text)  # string_value (field 2)
        encoded = b"\x12" + varint(len(inner)) + inner
        if len(_categories) < _MAX_CACHED:
            _categories[text] = encoded
    return encoded


def encode_vector(vector: FeatureVector) -> bytes:
    """One FeatureVector message body."""
    parts = [_field(_ENTITY_ID, vector.entity_id)] if vector.entity_id else []
    append = parts.append
    for value in vector.values:
        cls = value.__class__
        if cls is float:
            append(_NUMBER_PREFIX + _DOUBLE(value))
        elif cls is bool:
            append(_TRUE if value else _FALSE)
        elif cls is str:
            append(_string_value(value))  # type: ignore[arg-type]
        elif isinstance(value, bool):
            append(_TRUE if value else _FALSE)
        elif isinstance(value, str):
            append(_string_value(value))
        else:  # int and other numbers travel as doubles
            append(_NUMBER_PREFIX + _DOUBLE(float(value)))
    for tag, names in (
        (_MISSING, vector.missing),
        (_INVALID, vector.invalid),
    ):
        for name in names:
            append(_name(tag, name))
    if vector.entity_unknown:
        append(_UNKNOWN)
    for tag, names in (
        (_STORE_MISSING, vector.store_missing),
        (_STALE, vector.stale),
    ):
        for name in names:
            append(_name(tag, name))
    return b"".join(parts)


def encode_response(vectors: Sequence[FeatureVector]) -> bytes:
    """The serialized GetFeaturesResponse holding `vectors` in order."""
    parts = []
    for vector in vectors:
        body = encode_vector(vector)
        parts.append(bytes((_VECTORS,)) + varint(len(body)) + body)
    return b"".join(parts)
