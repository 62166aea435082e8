"""CPU per prediction with 1 vs 2 replicas of each service (not a test; run by hand).

    python -m bench.replicas_cost [--rounds 2] [--duration 5] [--concurrency 16]

For each round, alternately: a local mesh (`bench.mesh.bench_options`: plaintext edge, no mTLS,
no logger, ORT in process) with 1 replica of gateway, features and inference, then one with
`--replicas gateway=2,features=2,inference=2`; closed-loop Predict through Envoy; CPU of every
process from /proc (`bench.cpu`) summed per service over the measured window, divided by the
successful predictions. Flat CPU per prediction means replication costs nothing per request
(the 2-core box cannot show more throughput from more processes: docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

from bench import loadgen
from bench.cpu import CpuSampler, per_request_us
from bench.loadgen import LoadSpec, TargetSpec
from bench.mesh import bench_options
from predmesh.local.mesh import LocalMesh


def _measure(replicas: int, args: argparse.Namespace, state: Path) -> None:
    options = dataclasses.replace(
        bench_options(state, logging_on=False, edge=True),
        gateway_replicas=replicas,
        features_replicas=replicas,
        inference_replicas=replicas,
        supervise=False,
        extra_env={"PREDMESH_FEATURES_CACHE_TTL_MS": "0"},
    )
    with LocalMesh(options) as mesh:
        assert mesh.envoy is not None and mesh.redis is not None
        sessions = {
            "edge": [mesh.envoy.pid or 0],
            "gateway": [g.pid or 0 for g in mesh.gateways],
            "features": [f.pid or 0 for f in mesh.features_replicas],
            "orchestrator": [i.pid or 0 for i in mesh.inference_replicas],
            "redis": [mesh.redis.pid or 0],
        }
        target = TargetSpec("bench.targets:make_predict", {"address": mesh.edge_address, "model": "fraud"}, 1)
        spec = LoadSpec(mode="closed", concurrency=args.concurrency, duration_s=args.duration, warmup_requests=200)
        with CpuSampler(sessions) as sampler:
            result = loadgen.run(target, spec)
        us = per_request_us(sampler.between(*result.window), result.ok)
        print(
            f"replicas={replicas}: {result.throughput:6.0f} req/s  p99 {result.latency_ms['p99']:6.1f} ms"
            f"  errors {result.errors or '-'}  servers {sum(us.values()):7.0f}"
            + "".join(f"  {k} {v:6.0f}" for k, v in us.items())
            + f"  (CPU us per prediction; load {os.getloadavg()[0]:.1f})",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas_cost")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="replicas-cost-"))
    for round_ in range(args.rounds):
        for replicas in (1, 2):
            _measure(replicas, args, work / f"r{round_}-{replicas}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
