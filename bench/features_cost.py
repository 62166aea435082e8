"""CPU per entity of the features service against a real Redis (not a test; run by hand).

    python -m bench.features_cost [--entities 1,32] [--duration 5] [--concurrency 16] [--service-root DIR[,DIR]]
                                  [--redis single|cluster|both] [--rounds N]

Starts redis-server with the demo users, one features service process (local cache off, so
every entity is read from Redis) and measures GetFeatures closed loop for each batch size;
prints CPU microseconds per entity of the features process, Redis and the client, from /proc
(`bench.cpu`) over the measured window. `--service-root` runs the service from another
checkout (e.g. an export of the previous commit) for a before/after on the same machine;
several comma-separated roots are measured alternately in every round (before, after, before...).
`--redis single,cluster,cluster-redispy` alternates one Redis, a local Redis Cluster (3 masters +
3 replicas; `redis` sums every node) read with per-master pipelines, and the same cluster read with
redis-py's cluster pipeline, for `--rounds` rounds (drift hits all alike).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench import loadgen
from bench.cpu import CpuSampler, per_request_us
from bench.loadgen import LoadSpec, TargetSpec
from predmesh.local.procs import PythonService, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.features_cost")
    parser.add_argument("--entities", default="1,32")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--service-root", default=str(ROOT), help="checkout(s) to run the service from; a comma list alternates them"
    )
    parser.add_argument(
        "--redis",
        default="single",
        help="comma list of single, cluster (per-master pipelines), cluster-redispy (redis-py's cluster"
        " pipeline); 'both' = single,cluster",
    )
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    from predmesh.demo.load import load_demo
    from predmesh.local.rediscluster import RedisCluster

    work = Path(tempfile.mkdtemp(prefix="features-cost-"))
    redis = RedisServer(workdir=work / "redis")
    cluster = RedisCluster(work / "cluster")
    kinds = ["single", "cluster"] if args.redis == "both" else args.redis.split(",")
    try:
        if "single" in kinds:
            redis.start()
            load_demo(redis.url, n=1000)
        if any(k.startswith("cluster") for k in kinds):
            cluster.start()
            load_demo(cluster.url, n=1000)
        for round_ in range(args.rounds):
            for kind in kinds:
                if kind == "single":
                    url, pids = redis.url, [redis.pid or 0]
                else:
                    url, pids = cluster.url, [n.pid or 0 for n in cluster.nodes]
                for index, root in enumerate(args.service_root.split(",")):
                    workdir = work / f"features-{kind}-{round_}-{index}"
                    _measure(args, Path(root), workdir, url, pids, kind)

    finally:
        cluster.stop()
        redis.stop()
    return 0


def _measure(
    args: argparse.Namespace, root: Path, workdir: Path, redis_url: str, redis_pids: list[int], kind: str
) -> None:
    port = free_port()
    service_root = root.resolve()
    features = PythonService(
        "features",
        "services.features.app",
        port,
        {
            "PYTHONPATH": str(service_root),
            "PREDMESH_FEATURES_HOST": "127.0.0.1",
            "PREDMESH_FEATURES_PORT": str(port),
            "PREDMESH_FEATURES_REDIS_URL": redis_url,
            "PREDMESH_FEATURES_REGISTRY_PATH": str(service_root / "predmesh" / "demo" / "features.yaml"),
            "PREDMESH_FEATURES_CACHE_TTL_MS": "0",
            "PREDMESH_FEATURES_LOG_LEVEL": "WARNING",
            "PREDMESH_FEATURES_REDIS_CLUSTER_FAST_PATH": "false" if kind == "cluster-redispy" else "true",
        },
        workdir=workdir,
    )
    try:
        features.start()
        sessions = {"features": [features.pid or 0], "redis": redis_pids}
        for n in [int(x) for x in args.entities.split(",")]:
            target = TargetSpec("bench.targets:make_features", {"address": features.address, "entities": n}, n)
            spec = LoadSpec(mode="closed", concurrency=args.concurrency, duration_s=args.duration, warmup_requests=100)
            with CpuSampler(sessions) as sampler:
                result = loadgen.run(target, spec)
            cpu = sampler.between(*result.window)
            cpu["client"] = result.client_cpu_s
            entities = result.ok * n
            us = per_request_us(cpu, entities)
            print(
                f"{service_root.name} {kind:15s} entities={n:>3}: {result.items_per_s:8.0f}/s"
                f"  p50 {result.latency_ms['p50']:6.2f} p99 {result.latency_ms['p99']:6.1f} ms/call"
                f"  errors {result.errors or '-'}"
                + "".join(f"  {k} {v:6.1f}" for k, v in us.items())
                + f"  (CPU us per entity; load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    finally:
        features.stop()


if __name__ == "__main__":
    raise SystemExit(main())
