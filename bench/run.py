"""Benchmark driver: start what a scenario needs on loopback, measure, write JSON + markdown.

    python -m bench.run compare [--duration 8] [--rate auto] [--concurrency 32] [--client-procs 1]
    python -m bench.run scaling [--duration 8]
    python -m bench.run batch   [--duration 5] [--sizes 1,8,64,256,1024]

`compare` runs predmesh and its peers side by side in one run on the same model
(demo `fraud` v1, XGBoost -> ONNX) and the same transactions: closed-loop max
throughput first, then open-loop (Poisson) latency at one common rate that every
system can carry. Peers come from `bash bench/setup_peers.sh` venvs; a part that is
missing is reported as not run, with the reason. Results go to
`.predmesh/bench/results/<scenario>-<time>.{json,md}` (not committed).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import loadgen, report
from bench.cpu import CpuSampler, per_request_us
from bench.loadgen import LoadSpec, TargetSpec
from bench.mesh import BenchMesh
from bench.pause import Pauser
from bench.systems import SYSTEMS, Component, cpu_columns, missing, sessions_for, target_for

log = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".predmesh" / "bench"
MODEL, VERSION = "fraud", "1"


@dataclass
class System:
    key: str
    label: str
    group: str  # "end-to-end", "model", "features"
    target: TargetSpec
    # CPU sampling: session leader pids per column, and the classifier of whole-session peers
    sessions: dict[str, list[int]] = field(default_factory=dict)
    classify: Callable[[str, str], str] | None = None
    config: dict[str, str] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }


def measure(system: System, spec: LoadSpec) -> dict[str, Any]:
    """One load run; with CPU microseconds per successful request of every process of the
    system (from /proc over the measured window, `bench.cpu`) and of the client."""
    started = time.time()
    sampler = CpuSampler(system.sessions, system.classify) if system.sessions else None
    try:
        if sampler is not None:
            sampler.start()
        try:
            result = loadgen.run(system.target, spec).to_dict()
        finally:
            if sampler is not None:
                sampler.stop()
    except Exception as err:
        log.error("%s: %s", system.key, err)
        return {"system": system.key, "error": str(err)}
    cpu_s = sampler.between(*result["window"]) if sampler is not None else {}
    cpu_s["client"] = result["client_cpu_s"]
    result["cpu_us"] = cpu_columns(per_request_us(cpu_s, result["ok"]))
    lat = result["latency_ms"]
    log.info(
        "%-22s %-6s %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  CPU %6.0f us/req (+client %4.0f)  errors %s  late %d",
        system.key,
        spec.mode,
        result["throughput"],
        lat["p50"],
        lat["p99"],
        result["cpu_us"].get("servers", float("nan")),
        result["cpu_us"].get("client", float("nan")),
        result["errors"] or "-",
        result["late_sends"],
    )
    return {"system": system.key, "started": started, "loadavg_after": os.getloadavg(), **result}


def _rounds(
    systems: list[System], spec_for: Callable[[System], LoadSpec], repeat: int, by: str, pauser: Pauser
) -> list[dict[str, Any]]:
    """Measure every system `repeat` times, round robin (so drift in the machine's load hits
    all systems alike), and keep per system the run with the median `by`; every run stays in
    the row's "runs", in round order (so ratios can be taken round by round). Each run has the
    other systems' processes paused (`bench.pause`)."""
    runs: dict[str, list[dict[str, Any]]] = {s.key: [] for s in systems}
    for _ in range(repeat):
        for system in systems:
            with pauser.only(sid for sids in system.sessions.values() for sid in sids) as paused:
                result = measure(system, spec_for(system))
            runs[system.key].append(
                {
                    "label": system.label,
                    "group": system.group,
                    "config": system.config,
                    "paused_processes": len(paused),
                    **result,
                }
            )

    def metric(row: dict[str, Any]) -> float:
        if "error" in row:
            return float("-inf")
        return float(row["throughput"] if by == "throughput" else row["latency_ms"][by])

    out = []
    for system in systems:
        ordered = sorted(runs[system.key], key=metric)
        chosen = dict(ordered[(len(ordered) - 1) // 2])
        keep = ("throughput", "latency_ms", "errors", "error", "cpu_us", "offered_rate")
        chosen["runs"] = [{k: r.get(k) for k in keep} for r in runs[system.key]]
        out.append(chosen)
    return out


def _start_optional(name: str, unavailable: dict[str, str], start: Callable[[], Any]) -> Any:
    try:
        return start()
    except Exception as err:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        log.warning("%s not run: %s", name, reason)
        unavailable[name] = reason
        return None


def _users_parquet(path: Path) -> Path:
    import pandas as pd

    from predmesh.demo import synth

    frame = synth.users(1000).reset_index()
    frame["event_timestamp"] = pd.Timestamp.now(tz="UTC").floor("s")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def _start_triton(mesh: BenchMesh, run_dir: Path) -> Any:
    """predmesh's own Triton launcher on a copy of the model repository (cpu_local: python backend ORT)."""
    import shutil

    from predmesh.local.triton import TritonServer
    from services.inference.triton.layout import write_triton_layout

    repo = run_dir / "triton-models"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(mesh.model_repository, repo)
    write_triton_layout(repo)
    return mesh.launch(TritonServer(repo, workdir=run_dir / "logs" / "triton"))


def _pids(*procs: Any) -> list[int]:
    return [p.pid for p in procs if p is not None and p.pid is not None]


def predmesh_config(mesh: BenchMesh, with_logging: bool) -> dict[str, str]:
    """What a predmesh row runs with: shadow (from the routing table), logging, tracing and
    every gateway setting about coalescing (whatever the gateway's settings call it)."""
    import yaml

    from services.gateway.settings import GatewaySettings

    try:
        route = yaml.safe_load(mesh.local.routing_path.read_text()).get("models", {}).get(MODEL, {})
        shadow, ratio = route.get("shadow"), route.get("shadow_ratio", 1.0)
    except (OSError, AttributeError, yaml.YAMLError):
        shadow, ratio = None, None
    if isinstance(shadow, list) and all(isinstance(v, str | int) for v in shadow) and isinstance(ratio, int | float):
        shadow_text = ", ".join(f"v{v} at {ratio:.0%}" for v in shadow) or "none"
    else:
        shadow_text = json.dumps(shadow) if shadow else "none"
    settings = GatewaySettings()
    coalescing = {name: getattr(settings, name) for name in type(settings).model_fields if "coalesc" in name.lower()}
    return {
        "shadow": shadow_text,
        "logging": "Kafka (logger + broker)" if with_logging else "off",
        "tracing": "off" if not settings.otlp_endpoint else f"on ({settings.trace_sample_ratio:g})",
        "coalescing": ", ".join(f"{k}={v}" for k, v in coalescing.items()) or "not built",
    }


def _start_components(args: argparse.Namespace, mesh: BenchMesh, run_dir: Path) -> tuple[dict[str, Component], dict]:
    """Start the mesh and every peer; returns the components that run and the Feast setup info."""
    from bench.peers import launch

    unavailable: dict[str, str] = {}
    mesh.start()
    unavailable.update({f"predmesh {k}": v for k, v in mesh.unavailable.items()})
    local = mesh.local
    repo = mesh.model_repository
    onnx_path = repo / MODEL / VERSION / "model.onnx"
    assert local.inference is not None and local.features is not None and local.redis is not None
    started: dict[str, Component] = {
        "redis": Component("redis", mesh.redis_url, _pids(local.redis)),
        "features": Component("features", local.features.address, _pids(local.features)),
        "inference": Component("inference", local.inference.address, _pids(local.inference)),
    }
    plain = mesh.plain_gateway()
    started["gateway-nolog"] = Component("gateway-nolog", plain, _pids(mesh.plain_gateway_process))
    if mesh.logging_on:
        started["gateway"] = Component("gateway", local.gateway_address, _pids(local.gateway))
        started["logger"] = Component("logger", "", _pids(local.logger))
        started["broker"] = Component("broker", "", _pids(local.broker))
    if mesh.edge_address is not None:
        started["envoy"] = Component("envoy", mesh.edge_address, _pids(local.envoy))

    def optional(name: str, start: Callable[[], Component]) -> None:
        component = _start_optional(name, unavailable, start)
        if component is not None:
            started[component.name] = component

    optional(
        "mlserver",
        lambda: _component(
            "mlserver",
            mesh.launch(launch.MLServerProcess(onnx_path, MODEL, VERSION, run_dir / "logs" / "mlserver")),
            "grpc_address",
        ),
    )
    optional("triton", lambda: _component("triton", _start_triton(mesh, run_dir), "grpc_address"))
    if "triton" in started:
        optional(
            "inference-triton",
            lambda: _component(
                "inference-triton",
                mesh.add_inference(
                    "inference-triton",
                    run_dir / "triton-models",
                    PREDMESH_INFERENCE_TRITON_TARGET=started["triton"].address,
                    PREDMESH_INFERENCE_CPU_BACKEND="triton",
                ),
            ),
        )

    def start_ort_worker() -> Component:
        from predmesh.local.triton import OrtWorker

        worker = mesh.launch(OrtWorker(repo, workdir=run_dir / "logs" / "ort-worker"))
        started["ort-worker"] = _component("ort-worker", worker)
        return _component(
            "inference-ortw",
            mesh.add_inference(
                "inference-ortw",
                PREDMESH_INFERENCE_ORT_WORKERS=worker.address,  # type: ignore[attr-defined]
                PREDMESH_INFERENCE_CPU_BACKEND="ort_worker",
            ),
        )

    optional("inference-ortw", start_ort_worker)
    optional(
        "fastapi",
        lambda: _component(
            "fastapi",
            mesh.launch(launch.FastAPIProcess(mesh.redis_url, onnx_path, run_dir / "logs" / "fastapi")),
            "url",
        ),
    )
    if not args.no_ray:
        optional(
            "ray",
            lambda: _component(
                "ray",
                mesh.launch(launch.RayServeProcess(mesh.redis_url, onnx_path, run_dir / "logs" / "ray")),
                "url",
                classify=launch.ray_part,
            ),
        )
    feast_info: dict[str, Any] = {}

    def start_feast() -> Component:
        redis_host_port = mesh.redis_url.removeprefix("redis://").split("/")[0]
        users = _users_parquet(run_dir / "feast" / "users.parquet")
        feast_info.update(launch.build_feast_repo(run_dir / "feast" / "repo", redis_host_port, users, 2000))
        return _component(
            "feast", mesh.launch(launch.FeastServer(run_dir / "feast" / "repo", run_dir / "logs" / "feast")), "url"
        )

    optional("feast", start_feast)
    return started, {"unavailable": unavailable, "feast_setup": feast_info}


def _component(name: str, proc: Any, address_attr: str = "address", **kw: Any) -> Component:
    return Component(name, str(getattr(proc, address_attr)), _pids(proc), **kw)


def build_systems(mesh: BenchMesh, started: dict[str, Component], unavailable: dict[str, str]) -> list[System]:
    """The rows of SYSTEMS whose components all started (the others go to `unavailable`)."""
    repo = str(mesh.model_repository)
    systems = []
    for spec in SYSTEMS:
        lacking = missing(spec, started)
        if lacking:
            unavailable.setdefault(spec.key, f"not started: {', '.join(lacking)}")
            continue
        sessions, classify = sessions_for(spec, started)
        config = predmesh_config(mesh, "logger" in sessions) if spec.kind == "predict" else {}
        systems.append(
            System(
                spec.key,
                spec.label,
                spec.group,
                target_for(spec, started, MODEL, VERSION, repo),
                sessions,
                classify,
                config,
            )
        )
    return systems


def open_rates(systems: list[System], closed: list[dict[str, Any]], fixed: float) -> dict[str, float]:
    """Open-loop rate per system: `fixed` when given; else the end-to-end rows run at half of
    FastAPI's max (the issue's yardstick; half the group's slowest without FastAPI) and the
    other groups at half their slowest system's max, so those are all below saturation."""
    if fixed:
        return {s.key: fixed for s in systems}
    best = {row["system"]: row.get("throughput") or 0.0 for row in closed}
    rates: dict[str, float] = {}
    for system in systems:
        group = [s.key for s in systems if s.group == system.group and best.get(s.key, 0) > 0]
        if system.group == "end-to-end" and best.get("fastapi-naive", 0) > 0:
            base = best["fastapi-naive"]
        else:
            base = min((best[k] for k in group), default=100.0)
        rates[system.key] = max(10.0, math.floor(0.5 * base / 10) * 10)
    return rates


def scenario_compare(args: argparse.Namespace) -> dict[str, Any]:
    from bench.verify import check_scores

    run_dir = STATE / "run-compare"
    mesh = BenchMesh(run_dir, want_logging=not args.no_logging, want_edge=not args.no_envoy)
    try:
        started, extra = _start_components(args, mesh, run_dir)
        unavailable: dict[str, str] = extra["unavailable"]
        systems = build_systems(mesh, started, unavailable)
        if args.only:
            wanted = set(args.only.split(","))
            systems = [s for s in systems if s.key in wanted]
        addr = {name: c.address for name, c in started.items()}
        scores = check_scores(
            MODEL,
            VERSION,
            mesh.model_repository,
            addr["gateway-nolog"],
            {k: v for k, v in (("gateway+log", addr.get("gateway")), ("envoy", addr.get("envoy"))) if v},
            {
                name: addr[comp]
                for name, comp in (
                    ("orchestrator", "inference"),
                    ("orchestrator->ortw", "inference-ortw"),
                    ("orchestrator->triton", "inference-triton"),
                )
                if comp in addr
            },
            {name: addr[name] for name in ("mlserver", "triton") if name in addr},
            {name: addr[name] for name in ("fastapi", "ray") if name in addr},
        )
        log.info("score agreement: %s", scores["max_abs_diff"])

        def closed_spec(concurrency: int) -> LoadSpec:
            return LoadSpec(
                mode="closed",
                concurrency=concurrency,
                duration_s=args.duration,
                warmup_requests=200,
                processes=args.client_procs,
            )

        pauser = Pauser((sid for c in started.values() for sid in c.pids), enabled=not args.no_pause)
        closed = _rounds(systems, lambda _s: closed_spec(args.concurrency), args.repeat, "throughput", pauser)
        rates = open_rates(systems, closed, args.rate)
        log.info("open-loop rates: %s", rates)

        def open_spec(system: System) -> LoadSpec:
            return LoadSpec(
                mode="open",
                rate=rates[system.key],
                arrival="poisson",
                duration_s=args.duration,
                warmup_requests=200,
                processes=args.client_procs,
            )

        opened = _rounds(systems, open_spec, args.repeat, "p99", pauser)
        single: list[dict[str, Any]] = []
        if not args.no_single:
            e2e = [s for s in systems if s.group == "end-to-end"]
            single = _rounds(e2e, lambda _s: closed_spec(1), args.repeat, "p50", pauser)
        return {
            "scenario": "compare",
            "model": f"{MODEL}:{VERSION}",
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "client_procs": args.client_procs,
            "repeat": args.repeat,
            "others_paused": not args.no_pause,
            "open_rates": rates,
            "score_check": scores,
            "feast_setup": extra["feast_setup"],
            "unavailable": unavailable,
            "closed": closed,
            "open": opened,
            "single": single,
        }
    finally:
        mesh.stop()


def scenario_scaling(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = STATE / "run-scaling"
    mesh = BenchMesh(run_dir, want_logging=False, want_edge=False)
    rows: list[dict[str, Any]] = []
    try:
        mesh.start()
        local = mesh.local
        assert local.inference is not None
        gateways, inferences = [mesh.plain_gateway()], [local.inference.address]
        for n in range(1, args.max_replicas + 1):
            if n > 1:
                replica = mesh.add_replica()
                gateways.append(replica.gateway.address)
                inferences.append(replica.inference.address)
            for key, factory, addrs in (
                ("gateway Predict", "bench.targets:make_predict", gateways),
                ("orchestrator Infer", "bench.targets:make_infer", inferences),
            ):
                system = System(
                    f"{key} x{n}",
                    key,
                    "scaling",
                    TargetSpec(factory, {"address": ",".join(addrs), "model": MODEL, "version": VERSION}),
                )
                spec = LoadSpec(
                    mode="closed",
                    concurrency=args.concurrency,
                    duration_s=args.duration,
                    warmup_requests=200,
                    processes=args.client_procs,
                )
                rows.append({"replicas": n, "label": key, **measure(system, spec)})
    finally:
        mesh.stop()
    return {
        "scenario": "scaling",
        "model": f"{MODEL}:{VERSION}",
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "client_procs": args.client_procs,
        "rows": rows,
    }


def scenario_batch(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = STATE / "run-batch"
    mesh = BenchMesh(run_dir, want_logging=False, want_edge=False)
    rows: list[dict[str, Any]] = []
    try:
        mesh.start()
        for size in [int(s) for s in args.sizes.split(",")]:
            system = System(
                f"PredictBatch {size}",
                "gateway PredictBatch",
                "batch",
                TargetSpec(
                    "bench.targets:make_predict_batch",
                    {"address": mesh.plain_gateway(), "model": MODEL, "version": VERSION, "batch_size": size},
                    items_per_call=size,
                ),
            )
            spec = LoadSpec(
                mode="closed",
                concurrency=args.concurrency,
                duration_s=args.duration,
                warmup_requests=8,
                processes=1,
            )
            rows.append({"batch_size": size, **measure(system, spec)})
    finally:
        mesh.stop()
    return {
        "scenario": "batch",
        "model": f"{MODEL}:{VERSION}",
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    compare = sub.add_parser("compare", help="predmesh vs MLServer, Triton, FastAPI, Feast, side by side")
    compare.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    compare.add_argument("--concurrency", type=int, default=32, help="closed-loop requests in flight")
    compare.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open-loop req/s (0 = half FastAPI's max end to end, half the slowest max per group otherwise)",
    )
    compare.add_argument("--client-procs", type=int, default=1)
    compare.add_argument(
        "--repeat", type=int, default=1, help="round-robin rounds (3 for the must-show); the median run is reported"
    )
    compare.add_argument("--only", default="", help="comma-separated system keys to measure")
    compare.add_argument("--no-logging", action="store_true")
    compare.add_argument("--no-envoy", action="store_true")
    compare.add_argument("--no-ray", action="store_true", help="skip the Ray Serve peer (slow to start)")
    compare.add_argument("--no-single", action="store_true", help="skip the 1-in-flight latency runs")
    compare.add_argument(
        "--no-pause", action="store_true", help="keep the other systems running during each measurement"
    )
    scaling = sub.add_parser("scaling", help="throughput vs gateway/orchestrator processes (1, 2)")
    scaling.add_argument("--duration", type=float, default=8.0)
    scaling.add_argument("--concurrency", type=int, default=32)
    scaling.add_argument("--client-procs", type=int, default=1)
    scaling.add_argument("--max-replicas", type=int, default=2)
    batch = sub.add_parser("batch", help="predictions/s of PredictBatch with 1..1024 entities")
    batch.add_argument("--duration", type=float, default=5.0)
    batch.add_argument("--concurrency", type=int, default=2)
    batch.add_argument("--sizes", default="1,8,64,256,1024")
    parser.add_argument("--out", type=Path, default=STATE / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    info = machine()
    scenario = {"compare": scenario_compare, "scaling": scenario_scaling, "batch": scenario_batch}[args.scenario]
    result = {"machine": info, "command": f"python -m bench.run {' '.join(argv or sys.argv[1:])}"}
    result.update(scenario(args))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.out / f"{args.scenario}-{stamp}.json"
    json_path.write_text(json.dumps(result, indent=2, default=str))
    markdown = report.render(result)
    (args.out / f"{args.scenario}-{stamp}.md").write_text(markdown)
    print(markdown)
    print(f"\nresults: {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
