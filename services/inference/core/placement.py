"""Consistent-hash placement of cold model versions across replicas.

With more models than one replica can hold, each replica (an orchestrator replica, or an
ORT worker / Triton replica behind one orchestrator) owns a share of the *cold* (lazy)
versions: the owner loads a version on first use and serves it; the others never load
it, so the fleet's memory holds the catalogue about once instead of once per replica.
Eager versions (the routing table's arms) stay on every replica: they are hot, and
replicating them keeps the request path free of an ownership hop for most traffic.

`HashRing` maps a key ("model:version") to its owner(s): every node gets `vnodes`
points on a 64-bit ring (blake2b of "node#i"), a key belongs to the first point at or
after its own hash, and `owners(key, n)` walks on to the next distinct nodes (n > 1
replicates a version on n replicas, for load or availability).

Join/leave behaviour (what `test_placement.py` checks):

- A replica **joins**: it takes over about 1/N of the keys, only from the others' share
  (no key moves between two replicas that stayed). The new owner loads those versions
  on first request (a cold miss each); the previous owners stop receiving them and evict
  them through their pools' LRU as other versions need the room (nothing is unloaded
  eagerly, so a flapping replica costs no reload storms).
- A replica **leaves** (scale-in, crash): only its keys move, each to the next replica on
  the ring, which loads them on first request. Requests routed to the departed replica
  before the membership update fail fast (UNAVAILABLE) and the caller retries on the new
  owner (inference is idempotent); the gateway's fallback covers the rest.
- Membership comes from the target list (settings, or DNS/xDS endpoints in Kubernetes);
  every router computes the same ring from the same sorted member list, so no
  coordination is needed. During a rollout two routers may briefly disagree: both
  owners load the version (one extra copy until LRU evicts it), never a wrong answer.

Pure and immutable; safe from any thread.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    """Immutable consistent-hash ring over `nodes` (see module docstring)."""

    def __init__(self, nodes: Iterable[str], vnodes: int = 128) -> None:
        self.nodes = tuple(sorted(set(nodes)))
        if not self.nodes:
            raise ValueError("a hash ring needs at least one node")
        if vnodes < 1:
            raise ValueError("vnodes must be >= 1")
        points = sorted((_hash(f"{node}#{i}"), node) for node in self.nodes for i in range(vnodes))
        self._hashes = [h for h, _ in points]
        self._owners = [node for _, node in points]
        self.vnodes = vnodes

    def owners(self, key: str, n: int = 1) -> list[str]:
        """The `n` distinct nodes owning `key`, primary first (n is capped at the node count)."""
        n = min(max(n, 1), len(self.nodes))
        start = bisect.bisect_left(self._hashes, _hash(key)) % len(self._hashes)
        out: list[str] = []
        i = start
        while len(out) < n:
            node = self._owners[i]
            if node not in out:
                out.append(node)
            i = (i + 1) % len(self._owners)
        return out

    def owner(self, key: str) -> str:
        return self.owners(key, 1)[0]

    def with_nodes(self, nodes: Iterable[str]) -> HashRing:
        """A ring with another membership (join/leave), same vnodes."""
        return HashRing(nodes, self.vnodes)


def version_key(name: str, version: str) -> str:
    return f"{name}:{version}"
