"""Unit tests of the cluster shared level's key grouping (no Redis): the names of one lookup are
split per node serving their slot, every position exactly once and in order, keys of one hash
tag together, and a hole in the slot map is an error (the caller then falls back)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from predmesh.common.predcache import generation_key
from services.gateway.core.cache import CacheKey
from services.gateway.transport.cache_store import ENTRY_PREFIX, lookup_names
from services.gateway.transport.cache_store_cluster import group_by_node


@dataclass(frozen=True)
class Node:
    name: str


MASTERS = [Node("a"), Node("b"), Node("c")]


def three_masters(slot: int) -> Node:
    """Contiguous slot ranges, as `predmesh.local.rediscluster` assigns them."""
    return MASTERS[slot * 3 // 16384]


def test_positions_per_node_in_order_each_once() -> None:
    names = [f"predmesh:pcache:gen:user:u{i}" for i in range(64)]
    groups = group_by_node(names, three_masters)
    assert set(groups) == {"a", "b", "c"}  # 64 keys spread over every master
    positions = [i for _, indexes in groups.values() for i in indexes]
    assert sorted(positions) == list(range(64))
    for name, (node, indexes) in groups.items():
        assert node.name == name and indexes == sorted(indexes)
        assert all(three_masters(key_slot(names[i].encode())) is node for i in indexes)


def test_one_hash_tag_one_node() -> None:
    names = ["{features:user:u1}:a", "{features:user:u1}:b", "features:user:u1"]
    groups = group_by_node(names, three_masters)
    assert len(groups) == 1 and next(iter(groups.values()))[1] == [0, 1, 2]


def test_a_slot_without_a_node_is_an_error() -> None:
    with pytest.raises(RedisClusterException, match="no node serves"):
        group_by_node(["k1", "k2"], lambda slot: None)


def test_lookup_names_entries_then_each_entity_once() -> None:
    keys = [
        CacheKey("m:1:x", (("user", "u1"), ("merchant", "m9"))),
        CacheKey("m:1:y", (("user", "u1"),)),
        CacheKey("m:1:z", (("user", "u2"), ("merchant", "m9"))),
    ]
    names, entities = lookup_names(keys)
    assert entities == [("user", "u1"), ("merchant", "m9"), ("user", "u2")]
    assert names == [ENTRY_PREFIX + k.text for k in keys] + [generation_key(*e) for e in entities]
