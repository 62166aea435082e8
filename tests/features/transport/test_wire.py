"""The hand-written GetFeaturesResponse bytes equal protobuf's serialization (unit tests)."""

from __future__ import annotations

import random

import pytest
from google.protobuf.internal.encoder import _VarintBytes

from predmesh.v1 import features_pb2
from services.features.core.assembler import FeatureVector
from services.features.transport.converters import vectors_to_pb
from services.features.transport.wire import encode_response, varint

NAMES = ["amount", "txn_count_24h", "country", "is_new_device", "ünïcode_name", "n" * 200]
STRINGS = ["US", "", "日本", "x" * 130, "a b"]


def random_vector(rng: random.Random) -> FeatureVector:
    values: list[float | int | bool | str] = []
    for _ in range(rng.randint(0, 12)):
        kind = rng.randrange(6)
        if kind == 0:
            values.append(rng.uniform(-1e6, 1e6))
        elif kind == 1:
            values.append(rng.choice([0.0, -0.0, 1e-300, 1.7e308, 5e-324, 0.1]))
        elif kind == 2:
            values.append(rng.randint(-(2**40), 2**40))
        elif kind == 3:
            values.append(rng.random() < 0.5)
        elif kind == 4:
            values.append(rng.choice(STRINGS))
        else:
            values.append(0)

    def names() -> list[str]:
        return rng.sample(NAMES, rng.randint(0, 3))

    return FeatureVector(
        entity_id=rng.choice(["u1", "ü" * 70, "e" * 20000, "x"]),
        values=values,
        missing=names(),
        invalid=names(),
        entity_unknown=rng.random() < 0.3,
        store_missing=names(),
        stale=names(),
    )


@pytest.mark.parametrize("seed", range(20))
def test_bytes_equal_protobuf_serialization(seed: int) -> None:
    rng = random.Random(seed)
    vectors = [random_vector(rng) for _ in range(rng.randint(0, 6))]
    expected = vectors_to_pb(vectors)
    encoded = encode_response(vectors)
    assert encoded == expected.SerializeToString()
    assert features_pb2.GetFeaturesResponse.FromString(encoded) == expected


def test_the_fields_a_client_reads() -> None:
    vector = FeatureVector("u1", [2.5, 3, True, False, "US", 0.0], ["a"], ["b"], True, ["a"], ["c"])
    parsed = features_pb2.GetFeaturesResponse.FromString(encode_response([vector])).vectors[0]
    assert parsed.entity_id == "u1"
    assert [v.WhichOneof("kind") for v in parsed.values] == [
        "number_value",
        "number_value",
        "bool_value",
        "bool_value",
        "string_value",
        "number_value",
    ]
    assert [parsed.values[0].number_value, parsed.values[1].number_value, parsed.values[4].string_value] == [
        2.5,
        3.0,
        "US",
    ]
    assert (list(parsed.missing), list(parsed.invalid), parsed.entity_unknown) == (["a"], ["b"], True)
    assert (list(parsed.store_missing), list(parsed.stale)) == (["a"], ["c"])


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**35])
def test_varint(n: int) -> None:
    assert varint(n) == _VarintBytes(n)


def test_an_empty_response_is_empty_bytes() -> None:
    assert encode_response([]) == b""
