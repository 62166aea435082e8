"""Consistent-hash ownership of cold versions: deterministic, balanced, minimal movement."""

from __future__ import annotations

from collections import Counter

import pytest

from services.inference.core.placement import HashRing, version_key

KEYS = [version_key(f"segment_{i:03d}", "1") for i in range(2000)]


def shares(ring: HashRing) -> Counter[str]:
    return Counter(ring.owner(k) for k in KEYS)


def test_deterministic_and_independent_of_member_order() -> None:
    a = HashRing(["w1", "w2", "w3"])
    b = HashRing(["w3", "w1", "w2", "w1"])
    assert [a.owner(k) for k in KEYS] == [b.owner(k) for k in KEYS]


def test_balanced_within_a_quarter_of_the_fair_share() -> None:
    counts = shares(HashRing([f"w{i}" for i in range(5)]))
    assert set(counts) == {f"w{i}" for i in range(5)}
    fair = len(KEYS) / 5
    assert all(abs(c - fair) < 0.25 * fair for c in counts.values()), counts


def test_join_moves_only_keys_to_the_new_node_about_one_nth() -> None:
    before = HashRing(["w0", "w1", "w2", "w3"])
    after = before.with_nodes(["w0", "w1", "w2", "w3", "w4"])
    moved = [k for k in KEYS if before.owner(k) != after.owner(k)]
    assert all(after.owner(k) == "w4" for k in moved)  # nothing moves between replicas that stayed
    assert 0.1 < len(moved) / len(KEYS) < 0.3  # ~1/5


def test_leave_moves_only_the_departed_nodes_keys() -> None:
    before = HashRing(["w0", "w1", "w2", "w3"])
    after = before.with_nodes(["w0", "w1", "w3"])
    for k in KEYS:
        if before.owner(k) != "w2":
            assert after.owner(k) == before.owner(k)
        else:
            assert after.owner(k) in {"w0", "w1", "w3"}


def test_replicated_owners_are_distinct_and_primary_first() -> None:
    ring = HashRing(["w0", "w1", "w2"])
    for k in KEYS[:200]:
        owners = ring.owners(k, 2)
        assert len(set(owners)) == 2 and owners[0] == ring.owner(k)
    assert sorted(ring.owners(KEYS[0], 10)) == ["w0", "w1", "w2"]  # capped at the node count


def test_empty_ring_is_an_error() -> None:
    with pytest.raises(ValueError):
        HashRing([])
