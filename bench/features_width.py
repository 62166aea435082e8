"""Cost of feature width: CPU per entity of the features read path at 6 vs 50 stored features.

    python -m bench.features_width [--entities 32] [--calls 400]

In process (no gRPC hop): a real redis-server, `RedisFeatureStore.fetch` (one pipelined
HGETALL per entity) + `FeatureAssembler` (parse, validate, defaults) + `vectors_to_pb`
(the response message), for registries of 6 and of 50 float features. Reports this
process's CPU per entity (time.process_time) and redis-server's CPU per entity (/proc).
Feeds the per-feature term of the capacity model (predmesh/capacity.py, docs/CAPACITY.md).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import redis

from predmesh.featurestore.layout import entity_key
from predmesh.featurestore.registry import parse_registry
from predmesh.local.procs import RedisServer
from services.features.core.assembler import EntityRequest, FeatureAssembler, FeatureQuery
from services.features.core.store import RedisFeatureStore
from services.features.transport.converters import vectors_to_pb

USERS = 1000


def _registry(width: int):  # type: ignore[no-untyped-def]
    feats = {f"f{i:02d}_some_feature_name": {"dtype": "float", "source": "store", "default": 0.0} for i in range(width)}
    return parse_registry({"entities": {"user": {"features": feats}}})


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


async def _run(url: str, pid: int, width: int, entities: int, calls: int) -> tuple[float, float]:
    registry = _registry(width)
    client = redis.Redis.from_url(url)
    names = [spec.name for spec in registry.group("user").features]
    with client.pipeline(transaction=False) as pipe:
        for u in range(USERS):
            pipe.hset(
                entity_key("user", f"u{u}"), mapping={n: f"{(u * 7 + i) % 1000 / 10:.2f}" for i, n in enumerate(names)}
            )
        pipe.execute()
    client.close()
    store = RedisFeatureStore.from_url(url, timeout_s=2.0)
    assembler = FeatureAssembler(registry, store)
    query = [
        FeatureQuery("user", [EntityRequest(f"u{(c * entities + e) % USERS}") for e in range(entities)], names)
        for c in range(calls)
    ]
    for q in query[:20]:
        vectors_to_pb(await assembler.get_features(q))
    cpu0, redis0 = time.process_time(), _proc_cpu_s(pid)
    for q in query:
        vectors_to_pb(await assembler.get_features(q))
    cpu1, redis1 = time.process_time(), _proc_cpu_s(pid)
    await store.close()
    n = calls * entities
    return (cpu1 - cpu0) / n * 1e6, (redis1 - redis0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=32)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = RedisServer()
    with server:
        assert server.pid is not None
        results: dict[int, list[tuple[float, float]]] = {6: [], 50: []}
        for _ in range(args.rounds):
            for width in results:
                results[width].append(asyncio.run(_run(server.url, server.pid, width, args.entities, args.calls)))
    print(f"| stored features | service CPU us/entity (median of {args.rounds}) | redis CPU us/entity |")
    print("|---:|---:|---:|")
    for width, rows in results.items():
        svc = sorted(r[0] for r in rows)[len(rows) // 2]
        red = sorted(r[1] for r in rows)[len(rows) // 2]
        print(f"| {width} | {svc:.1f} | {red:.1f} |")


if __name__ == "__main__":
    main()
