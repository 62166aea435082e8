"""CPU per prediction of every process of the full path, at N in flight (not a test; run by hand).

    python -m bench.gateway_cost [--concurrency 32,1] [--duration 6] [--label after] [--hold 0]

One local mesh as `bench.run compare` measures it (`bench.mesh.bench_options`: Envoy edge, Kafka
logger + tansu broker, the demo routing with its 10% shadow, tracing off, ORT in the orchestrator),
then a closed-loop Predict run through Envoy per `--concurrency` value (200 warm-up requests, then
`--duration` s). Prints one line per run: req/s, p50, degraded answers and the CPU microseconds per
successful prediction of every process (`bench.cpu`: user + system time from /proc over the
measured window), and the same as one JSON line (`--json`).

A/B of two trees: the services are started from the current directory (PYTHONPATH), so run this
script from an export of the old code and from this tree, alternately:

    git archive main | tar -x -C /tmp/before
    for r in 1 2 3; do (cd /tmp/before && python -m bench.gateway_cost --label before);
                       python -m bench.gateway_cost --label after; done

`--hold S` keeps the mesh up S seconds after the runs (and prints the pids) for a profiler.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import loadgen
from bench.cpu import CpuSampler, per_request_us
from bench.loadgen import LoadSpec, TargetSpec
from bench.mesh import bench_options
from predmesh.local.mesh import LocalMesh
from predmesh.local.procs import free_port

_ROWS = re.compile(r'^predmesh_gateway_batch_rows_(sum|count)\{model="fraud",path="(\w+)"\} ([0-9.e+]+)$', re.M)


def _batch_rows(port: int) -> dict[tuple[str, str], float]:
    """The gateway's batch_rows histogram: (sum|count, path) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {(kind, path): float(v) for kind, path, v in _ROWS.findall(text)}


def _sessions(local: LocalMesh) -> dict[str, list[int]]:
    assert local.envoy is not None and local.redis is not None and local.broker is not None
    return {
        "edge": [local.envoy.pid or 0],
        "gateway": [g.pid or 0 for g in local.gateways],
        "features": [f.pid or 0 for f in local.features_replicas],
        "orchestrator": [i.pid or 0 for i in local.inference_replicas],
        "logger": [local.logger.pid or 0] if local.logger else [],
        "broker": [local.broker.pid or 0],
        "redis": [local.redis.pid or 0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_cost")
    parser.add_argument("--concurrency", default="32,1", help="comma-separated requests in flight, one run each")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--label", default=os.path.basename(os.getcwd()))
    parser.add_argument("--hold", type=float, default=0.0, help="keep the mesh up this long after the runs")
    parser.add_argument("--json", action="store_true", help="also print each run as one JSON line")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the services")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` stops the mesh too
    options = dataclasses.replace(
        bench_options(Path(tempfile.mkdtemp(prefix="gateway-cost-")), logging_on=True, edge=True), supervise=False
    )
    LocalMesh(options).prepare()  # the demo models first: the metrics port is picked just before the start
    metrics_port = free_port()
    options.extra_env = {"PREDMESH_GATEWAY_METRICS_PORT": str(metrics_port), **dict(e.split("=", 1) for e in args.env)}
    with LocalMesh(options) as mesh:
        sessions = _sessions(mesh)
        target = TargetSpec("bench.targets:make_predict", {"address": mesh.edge_address, "model": "fraud"})
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            spec = LoadSpec(mode="closed", concurrency=concurrency, duration_s=args.duration, warmup_requests=200)
            load = os.getloadavg()[0]
            rows_before = _batch_rows(metrics_port)
            with CpuSampler(sessions) as sampler:
                result = loadgen.run(target, spec)
            rows = {k: v - rows_before.get(k, 0.0) for k, v in _batch_rows(metrics_port).items()}
            per_batch = {
                path: rows[("sum", path)] / rows[("count", path)]
                for kind, path in rows
                if kind == "count" and rows[("count", path)] > 0
            }
            us = per_request_us(sampler.between(*result.window), result.ok)
            us["client"] = result.client_cpu_s / max(result.ok, 1) * 1e6
            servers = sum(v for k, v in us.items() if k != "client")
            lat = result.latency_ms
            print(
                f"{args.label:8s} {concurrency:3d} in flight: {result.throughput:6.0f} req/s  p50 {lat['p50']:6.2f} ms"
                f"  errors {result.errors or '-'}  CPU us/pred servers {servers:6.0f}"
                + "".join(f"  {k} {v:5.0f}" for k, v in us.items())
                + "".join(f"  rows/{path} batch {n:.1f}" for path, n in sorted(per_batch.items()))
                + f"  (load {load:.1f})",
                flush=True,
            )
            if args.json:
                row = {"label": args.label, "concurrency": concurrency, "throughput": result.throughput}
                row.update(p50_ms=lat["p50"], errors=result.errors, cpu_us=us, rows_per_batch=per_batch, load=load)
                print(json.dumps(row))
        if args.hold > 0:
            print(f"holding the mesh {args.hold:.0f} s; pids {sessions}", flush=True)
            print(f"edge {mesh.edge_address}; gateway metrics port {metrics_port}", flush=True)
            time.sleep(args.hold)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
