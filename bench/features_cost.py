"""CPU per entity of the features service against a real Redis (not a test; run by hand).

    python -m bench.features_cost [--entities 1,32] [--duration 5] [--concurrency 16] [--service-root DIR]

Starts redis-server with the demo users, one features service process (local cache off, so
every entity is read from Redis) and measures GetFeatures closed loop for each batch size;
prints CPU microseconds per entity of the features process, Redis and the client, from /proc
(`bench.cpu`) over the measured window. `--service-root` runs the service from another
checkout (e.g. an export of the previous commit) for a before/after on the same machine.
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
    parser.add_argument("--service-root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    from predmesh.demo.load import load_demo

    work = Path(tempfile.mkdtemp(prefix="features-cost-"))
    redis = RedisServer(workdir=work / "redis")
    features: PythonService | None = None
    try:
        redis.start()
        load_demo(redis.url, n=1000)
        port = free_port()
        service_root = args.service_root.resolve()
        features = PythonService(
            "features",
            "services.features.app",
            port,
            {
                "PYTHONPATH": str(service_root),
                "PREDMESH_FEATURES_HOST": "127.0.0.1",
                "PREDMESH_FEATURES_PORT": str(port),
                "PREDMESH_FEATURES_REDIS_URL": redis.url,
                "PREDMESH_FEATURES_REGISTRY_PATH": str(service_root / "predmesh" / "demo" / "features.yaml"),
                "PREDMESH_FEATURES_CACHE_TTL_MS": "0",
                "PREDMESH_FEATURES_LOG_LEVEL": "WARNING",
            },
            workdir=work / "features",
        )
        features.start()
        sessions = {"features": [features.pid or 0], "redis": [redis.pid or 0]}
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
                f"{service_root.name} entities={n:>3}: {result.items_per_s:8.0f}/s  errors {result.errors or '-'}"
                + "".join(f"  {k} {v:6.1f}" for k, v in us.items())
                + f"  (CPU us per entity; load {os.getloadavg()[0]:.1f})"
            )
    finally:
        if features is not None:
            features.stop()
        redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
