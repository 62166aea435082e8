"""Predict in the full local mesh with the prediction cache off vs on (not a test; run by hand).

    python -m bench.cache_mesh [--rounds 3] [--rate 150] [--duration 10] [--hit-ratio 0.9]

One local mesh (`bench.mesh.bench_options` with the logger and the Envoy edge, plus the cache's
shared Redis level: `MeshOptions.with_cache`) serving the demo routing. Each round measures `off`
(the demo routing) then `on` (the same routing plus `cache: {ttl_s: 600}` on fraud), switched live
through the routing file (a new revision also clears the cache). Open-loop Predict through Envoy at
`--rate` requests/s (latency from each request's intended send time: no coordinated omission);
`--hit-ratio` of the requests repeat one of 200 fixed requests (sent once as the warm-up), the
others are new (a unique context). The same request stream in both modes. CPU: every process from
/proc (`bench.cpu`) summed per service over the measured window, divided by the answered (OK,
not degraded) requests. The hit ratio is read from the gateway's cache counters over the run,
less the warm-up's misses (one per hot request: a new routing revision starts the cache empty).
Before round 0, one unreported run (`--warmup` s, cache off) warms the mesh up (first calls,
model sessions). Prints one line per measurement, with the load average (the box may be shared)
and the client's late sends (the load generator falling behind its schedule).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench import loadgen
from bench.cpu import CpuSampler, per_request_us
from bench.loadgen import LoadSpec, TargetSpec
from bench.mesh import bench_options
from predmesh.demo import DEMO_ROUTING
from predmesh.local.mesh import LocalMesh
from predmesh.local.procs import free_port

HOT = 200
_LOOKUP = re.compile(r'^predmesh_gateway_cache_lookups_total\{model="fraud",result="(\w+)"\} ([0-9.e+]+)$', re.M)


def _routing(cache: bool) -> str:
    table: dict[str, Any] = yaml.safe_load(DEMO_ROUTING.read_text())
    if cache:
        table["models"]["fraud"]["cache"] = {"ttl_s": 600}
    return yaml.safe_dump(table)


def _lookups(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {level: float(n) for level, n in _LOOKUP.findall(text)}


def _measure(
    mesh: LocalMesh, mode: str, round_: int, args: argparse.Namespace, metrics_port: int, report: bool = True
) -> None:
    tmp = mesh.routing_path.with_suffix(".tmp")
    tmp.write_text(f"# bench round {round_} cache {mode}\n" + _routing(mode == "on"))
    tmp.replace(mesh.routing_path)
    time.sleep(1.0)  # the gateway polls the file every 100 ms (set below)
    assert mesh.envoy is not None and mesh.redis is not None and mesh.broker is not None
    sessions = {
        "edge": [mesh.envoy.pid or 0],
        "gateway": [g.pid or 0 for g in mesh.gateways],
        "features": [f.pid or 0 for f in mesh.features_replicas],
        "orchestrator": [i.pid or 0 for i in mesh.inference_replicas],
        "redis": [mesh.redis.pid or 0],
        "logger": [mesh.logger.pid or 0] if mesh.logger else [],
        "broker": [mesh.broker.pid or 0],
    }
    target = TargetSpec(
        "bench.targets:make_predict_cache_mix",
        {"address": mesh.edge_address, "model": "fraud", "hit_ratio": args.hit_ratio, "hot": HOT, "seed": round_},
        1,
    )
    duration = args.duration if report else args.warmup
    spec = LoadSpec(mode="open", rate=args.rate, duration_s=duration, warmup_requests=HOT, seed=round_ + 1)
    before = _lookups(metrics_port)
    with CpuSampler(sessions) as sampler:
        result = loadgen.run(target, spec)
    after = _lookups(metrics_port)
    us = per_request_us(sampler.between(*result.window), result.ok)
    if not report:
        return
    seen = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    total = sum(seen.values()) - HOT  # the warm-up: one miss per hot request
    hits = (seen.get("local", 0.0) + seen.get("shared", 0.0)) / total if total > 0 else 0.0
    lat = result.latency_ms
    print(
        f"round {round_} cache {mode:3s}: {result.ok} ok / {result.sent} sent at {args.rate:.0f}/s"
        f"  errors {result.errors or '-'}  p50 {lat.get('p50', 0):6.1f} ms  p99 {lat.get('p99', 0):6.1f} ms"
        f"  late sends {result.late_sends}  hit ratio {hits:.3f}  CPU us/request: total {sum(us.values()):6.0f}"
        + "".join(f"  {k} {v:5.0f}" for k, v in us.items())
        + f"  (load {' '.join(f'{x:.1f}' for x in os.getloadavg())})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_mesh")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--hit-ratio", type=float, default=0.9)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of unreported load before round 0")
    args = parser.parse_args(argv)
    options = dataclasses.replace(
        bench_options(Path(tempfile.mkdtemp(prefix="cache-mesh-")), logging_on=True, edge=True),
        with_cache=True,
        supervise=False,
    )
    LocalMesh(options).prepare()  # train the demo models first: the metrics port is picked just before the start
    metrics_port = free_port()
    options.extra_env = {
        "PREDMESH_GATEWAY_ROUTING_POLL_MS": "100",
        "PREDMESH_GATEWAY_METRICS_PORT": str(metrics_port),
    }
    with LocalMesh(options) as mesh:
        _measure(mesh, "off", -1, args, metrics_port, report=False)
        for round_ in range(args.rounds):
            for mode in ("off", "on"):
                _measure(mesh, mode, round_, args, metrics_port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
