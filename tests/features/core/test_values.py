"""Value parsing/validation/encoding and the TTL-LRU cache (unit tests)."""

from __future__ import annotations

import numpy as np
import pytest

from predmesh.featurestore.spec import DType, FeatureSpec, Source
from predmesh.featurestore.values import coerce, encode, parse_stored, parse_text
from services.features.core.cache import EntityCache
from services.features.core.store import StoredEntity

FLOAT = FeatureSpec("f", DType.FLOAT, Source.STORE, 1.0, min=0.0, max=10.0)
INT = FeatureSpec("i", DType.INT, Source.STORE, 1, min=0.0, max=10.0)
BOOL = FeatureSpec("b", DType.BOOL, Source.STORE, False)
CAT = FeatureSpec("c", DType.CATEGORY, Source.STORE, "a", categories=frozenset({"a", "b"}), category_order=("a", "b"))


@pytest.mark.parametrize(
    ("spec", "raw", "expected"),
    [
        (FLOAT, b"2.5", 2.5),
        (FLOAT, b" 10 ", 10.0),
        (FLOAT, b"1e-1", 0.1),
        (FLOAT, b"10.01", None),
        (FLOAT, b"-0.5", None),
        (FLOAT, b"nan", None),
        (FLOAT, b"inf", None),
        (FLOAT, b"abc", None),
        (FLOAT, b"", None),
        (INT, b"7", 7),
        (INT, b"7.0", 7),
        (INT, b"7.5", None),
        (INT, b"11", None),
        (BOOL, b"1", True),
        (BOOL, b"0", False),
        (BOOL, b"TRUE", True),
        (BOOL, b"false", False),
        (BOOL, b"yes", None),
        (CAT, b"b", "b"),
        (CAT, b"z", None),
        (CAT, b"\xff", None),
    ],
)
def test_parse_stored(spec: FeatureSpec, raw: bytes, expected: object) -> None:
    value = parse_stored(spec, raw)
    assert value == expected
    if expected is not None:
        assert type(value) is type(expected)


@pytest.mark.parametrize(
    "raw",
    [
        *(b"2.5", b" 3\t", b"1_0", b"+1e0", b"-0.0", b"0x10", b"1e400", b"-inf", b"NaN", b"\xd9\xa3", b"\xff"),
        *(b"9.5\n", b"1", b"0", b" 1", b"01", b"10", b"-0", b"+7", b"7 ", b"1.0", b"true", b"\xd9\xa1"),
    ],
)
@pytest.mark.parametrize("spec", [FLOAT, INT, BOOL])
def test_fast_paths_agree_with_the_text_path(spec: FeatureSpec, raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        assert parse_stored(spec, raw) is None
        return
    stored, parsed = parse_stored(spec, raw), parse_text(spec, text)
    assert stored == parsed
    assert type(stored) is type(parsed)  # True is not 1


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        (FLOAT, 3, 3.0),
        (FLOAT, "4.5", 4.5),
        (FLOAT, True, None),
        (FLOAT, None, None),
        (INT, 3.0, 3),
        (INT, 3.2, None),
        (BOOL, True, True),
        (BOOL, 0.0, False),
        (BOOL, 2.0, None),
        (BOOL, "true", True),
        (CAT, "a", "a"),
        (CAT, 1.0, None),
        (CAT, False, None),
    ],
)
def test_coerce_context(spec: FeatureSpec, value: object, expected: object) -> None:
    result = coerce(spec, value)  # type: ignore[arg-type]
    assert result == expected
    if expected is not None:
        assert type(result) is type(expected)


def test_encode_numpy_and_python_values() -> None:
    assert encode(FLOAT, np.float64(2.25)) == "2.25"
    assert encode(FLOAT, 1e-5) == "1e-05" and parse_stored(FLOAT, b"1e-05") == 1e-5
    assert encode(INT, np.int64(4)) == "4"
    assert encode(INT, 4.0) == "4"
    assert encode(BOOL, np.bool_(True)) == "1"
    assert encode(BOOL, False) == "0"
    assert encode(CAT, "b") == "b"
    assert encode(CAT, "z") is None
    assert encode(FLOAT, 11.0) is None
    assert encode(FLOAT, [1.0]) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cache_ttl_lru_and_field_coverage() -> None:
    clock = FakeClock()
    cache = EntityCache(ttl_s=0.5, max_entries=2, clock=clock)
    one = StoredEntity(True, {"f": b"1"})
    cache.put("user", "u1", one)
    assert cache.get("user", "u1", ["f"]) is one
    assert cache.get("user", "u1", ["f", "g"]) is None  # entry lacks a needed field
    clock.now += 0.6
    assert cache.get("user", "u1", ["f"]) is None  # expired
    assert len(cache) == 0

    cache.put("user", "a", one)
    cache.put("user", "b", one)
    assert cache.get("user", "a", []) is one  # a is now most recent
    cache.put("user", "c", one)  # evicts b, the least recently used
    assert cache.get("user", "b", []) is None
    assert cache.get("user", "a", []) is one and cache.get("user", "c", []) is one
    assert cache.hits == 4 and cache.misses == 3

    with pytest.raises(ValueError):
        EntityCache(ttl_s=0, max_entries=10)
