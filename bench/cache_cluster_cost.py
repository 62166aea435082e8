"""CPU of the prediction cache's shared level per coalesced window: one Redis vs a Redis Cluster
(not a test; run by hand).

    python -m bench.cache_cluster_cost [--window 32] [--calls 300] [--rounds 5]

Starts one redis-server and a local Redis Cluster of 3 masters (no replicas: they only add load
to a shared box), stores `--window` entries of distinct users per window (each entry with its
user's generation, so a lookup reads 2 x window keys), then alternates, `--rounds` times, the
modes below over the same windows, `--calls` lookups each (all hits), and one store of a
window per mode. Prints per mode the gateway's CPU per lookup and per store (this process,
`time.process_time`) and the Redis servers' CPU per lookup (every redis-server of that mode,
from /proc), medians over the rounds:

- `redis`: the single-Redis level, one MGET (`RedisSharedCache`);
- `cluster`: the cluster level, one read-only script per master, sent at once
  (`ClusterSharedCache`, the shipped path);
- `cluster-gets`: the same but a pipeline of GETs per master (one command per key);
- `cluster-client`: every key through redis-py's cluster client (its fallback path: one MGET
  per slot, `mget_nonatomic`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio.cluster import ClusterNode

from bench.cpu import snapshot
from predmesh.local.procs import RedisServer
from predmesh.local.rediscluster import RedisCluster
from services.gateway.core.cache import CachedAnswer, CacheKey, SharedEntry
from services.gateway.core.types import Score
from services.gateway.transport.cache_store import RedisSharedCache
from services.gateway.transport.cache_store_cluster import ClusterSharedCache

WINDOWS = 20
ANSWER = CachedAnswer(Score(0.12, (0.88, 0.12), "legit"), ("avg_amount_30d",))


class PipelinedGets(ClusterSharedCache):
    """The cluster level with a pipeline of GETs per master instead of the script."""

    async def _lookup(self, node: ClusterNode, names: list[str]) -> list[Any]:
        async with self._client(node).pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(name)
            return list(await pipe.execute())


class ClusterClientOnly(ClusterSharedCache):
    """Every key through redis-py's cluster client (what a failed fast path falls back to)."""

    async def _lookup(self, node: ClusterNode, names: list[str]) -> list[Any]:
        raise ConnectionError("bench: use the fallback")


def windows(size: int) -> list[list[CacheKey]]:
    return [[CacheKey(f"fraud:2:w{w}-{i}", (("user", f"u{w}-{i}"),)) for i in range(size)] for w in range(WINDOWS)]


def entries(keys: Sequence[CacheKey]) -> list[SharedEntry]:
    return [(key, ANSWER, (0,), 3600.0) for key in keys]


async def measure(level: Any, wins: list[list[CacheKey]], calls: int, pids: list[int]) -> tuple[float, float, float]:
    """(gateway us per lookup, Redis servers us per lookup, gateway us per store of a window)."""
    for keys in wins:
        await level.put_many(entries(keys))
    hits = await level.get_many(wins[0])
    assert all(hit.answer is not None for hit in hits), "bench windows must hit"
    servers_before = sum(snapshot({"redis": pids}).values())
    t0 = time.process_time()
    for n in range(calls):
        await level.get_many(wins[n % len(wins)])
    get_us = (time.process_time() - t0) / calls * 1e6
    server_us = (sum(snapshot({"redis": pids}).values()) - servers_before) / calls * 1e6
    t0 = time.process_time()
    for keys in wins:
        await level.put_many(entries(keys))
    put_us = (time.process_time() - t0) / len(wins) * 1e6
    return get_us, server_us, put_us


async def run(args: argparse.Namespace, single: RedisServer, cluster: RedisCluster) -> None:
    wins = windows(args.window)
    single_pids = [single.pid] if single.pid else []
    cluster_pids = [node.pid for node in cluster.nodes if node.pid]
    modes: dict[str, tuple[Any, list[int]]] = {
        "redis": (RedisSharedCache(single.url, 1.0), single_pids),
        "cluster": (ClusterSharedCache(cluster.url, 1.0), cluster_pids),
        "cluster-gets": (PipelinedGets(cluster.url, 1.0), cluster_pids),
        "cluster-client": (ClusterClientOnly(cluster.url, 1.0), cluster_pids),
    }
    results: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
    for r in range(args.rounds):
        for mode, (level, pids) in modes.items():
            results[mode].append(await measure(level, wins, args.calls, pids))
            get_us, server_us, put_us = results[mode][-1]
            print(
                f"round {r} {mode:14s}: lookup {get_us:6.0f} us (redis servers {server_us:4.0f} us),"
                f" store {put_us:6.0f} us"
            )
    print(f"median of {args.rounds} rounds, window of {args.window} keys ({2 * args.window} Redis keys per lookup):")
    base = statistics.median(get for get, _, _ in results["redis"])
    for mode, rows in results.items():
        get_us = statistics.median(get for get, _, _ in rows)
        server_us = statistics.median(server for _, server, _ in rows)
        put_us = statistics.median(put for _, _, put in rows)
        print(
            f"  {mode:14s}: lookup {get_us:6.0f} us CPU (x{get_us / base:.2f}), "
            f"redis servers {server_us:4.0f} us, store {put_us:6.0f} us"
        )
    for level, _ in modes.values():
        await level.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_cluster_cost")
    parser.add_argument("--window", type=int, default=32, help="cache keys per lookup (distinct users)")
    parser.add_argument("--calls", type=int, default=300, help="lookups per mode and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cache-cluster-cost-"))
    single = RedisServer(workdir=workdir / "single")
    with single, RedisCluster(workdir / "cluster", replicas=0) as cluster:
        asyncio.run(run(args, single, cluster))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
