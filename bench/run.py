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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen, report
from bench.loadgen import LoadSpec, TargetSpec
from bench.mesh import BenchMesh

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
    started = time.time()
    try:
        result = loadgen.run(system.target, spec).to_dict()
    except Exception as err:
        log.error("%s: %s", system.key, err)
        return {"system": system.key, "error": str(err)}
    lat = result["latency_ms"]
    log.info(
        "%-22s %-6s %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  errors %s  late %d",
        system.key,
        spec.mode,
        result["throughput"],
        lat["p50"],
        lat["p99"],
        result["errors"] or "-",
        result["late_sends"],
    )
    return {"system": system.key, "started": started, "loadavg_after": os.getloadavg(), **result}


def _rounds(systems: list[System], spec: LoadSpec, repeat: int, by: str) -> list[dict[str, Any]]:
    """Measure every system `repeat` times, round robin (so drift in the machine's load hits
    all systems alike), and keep per system the run with the median `by` (all runs stay in
    the row's "runs")."""
    runs: dict[str, list[dict[str, Any]]] = {s.key: [] for s in systems}
    for _ in range(repeat):
        for system in systems:
            runs[system.key].append({"label": system.label, "group": system.group, **measure(system, spec)})

    def metric(row: dict[str, Any]) -> float:
        if "error" in row:
            return float("-inf")
        return float(row["throughput"] if by == "throughput" else row["latency_ms"]["p99"])

    out = []
    for system in systems:
        ordered = sorted(runs[system.key], key=metric)
        chosen = dict(ordered[(len(ordered) - 1) // 2])
        chosen["runs"] = [{k: r.get(k) for k in ("throughput", "latency_ms", "errors", "error")} for r in ordered]
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


def _predict(address: str) -> TargetSpec:
    return TargetSpec("bench.targets:make_predict", {"address": address, "model": MODEL, "version": VERSION})


def _infer(address: str) -> TargetSpec:
    return TargetSpec("bench.targets:make_infer", {"address": address, "model": MODEL, "version": VERSION})


def _v2(address: str, repo: Path) -> TargetSpec:
    return TargetSpec(
        "bench.targets:make_v2_infer",
        {"address": address, "model_repository": str(repo), "model": MODEL, "version": VERSION},
    )


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


def scenario_compare(args: argparse.Namespace) -> dict[str, Any]:
    from bench.peers import launch
    from bench.verify import check_scores

    run_dir = STATE / "run-compare"
    unavailable: dict[str, str] = {}
    mesh = BenchMesh(run_dir, want_logging=not args.no_logging, want_edge=not args.no_envoy)
    try:
        mesh.start()
        unavailable.update({f"predmesh {k}": v for k, v in mesh.unavailable.items()})
        repo = mesh.model_repository
        onnx_path = repo / MODEL / VERSION / "model.onnx"
        local = mesh.local
        assert local.inference is not None and local.features is not None

        mlserver = _start_optional(
            "MLServer",
            unavailable,
            lambda: mesh.launch(launch.MLServerProcess(onnx_path, MODEL, VERSION, run_dir / "logs" / "mlserver")),
        )
        triton = _start_optional("Triton", unavailable, lambda: _start_triton(mesh, run_dir))
        orch_triton = None
        if triton is not None:
            orch_triton = _start_optional(
                "predmesh orchestrator -> Triton",
                unavailable,
                lambda: mesh.add_inference(
                    "inference-triton",
                    run_dir / "triton-models",
                    PREDMESH_INFERENCE_TRITON_TARGET=triton.grpc_address,
                    PREDMESH_INFERENCE_CPU_BACKEND="triton",
                ),
            )

        def start_ort_worker() -> Any:
            from predmesh.local.triton import OrtWorker

            worker = mesh.launch(OrtWorker(repo, workdir=run_dir / "logs" / "ort-worker"))
            return mesh.add_inference(
                "inference-ortw",
                PREDMESH_INFERENCE_ORT_WORKERS=worker.address,  # type: ignore[attr-defined]
                PREDMESH_INFERENCE_CPU_BACKEND="ort_worker",
            )

        orch_worker = _start_optional("predmesh orchestrator -> ORT worker", unavailable, start_ort_worker)
        fastapi = _start_optional(
            "FastAPI",
            unavailable,
            lambda: mesh.launch(launch.FastAPIProcess(mesh.redis_url, onnx_path, run_dir / "logs" / "fastapi")),
        )
        feast_info: dict[str, Any] = {}

        def start_feast() -> Any:
            redis_host_port = mesh.redis_url.removeprefix("redis://").split("/")[0]
            users = _users_parquet(run_dir / "feast" / "users.parquet")
            feast_info.update(launch.build_feast_repo(run_dir / "feast" / "repo", redis_host_port, users, 2000))
            return mesh.launch(launch.FeastServer(run_dir / "feast" / "repo", run_dir / "logs" / "feast"))

        feast = _start_optional("Feast", unavailable, start_feast)
        plain_gateway = mesh.plain_gateway()

        systems: list[System] = []
        if mesh.edge_address is not None:
            upstream = "gateway + Kafka logging" if mesh.logging_on else "gateway (no logging)"
            systems.append(
                System(
                    "predmesh-full",
                    f"predmesh full path: Envoy -> {upstream}",
                    "end-to-end",
                    _predict(mesh.edge_address),
                )
            )
        if mesh.logging_on:
            systems.append(
                System(
                    "predmesh-gw+log",
                    "predmesh gateway Predict + Kafka logging (no Envoy)",
                    "end-to-end",
                    _predict(local.gateway_address),
                )
            )
        systems.append(
            System(
                "predmesh-gateway",
                "predmesh gateway Predict (features + inference, no logging, no Envoy)",
                "end-to-end",
                _predict(plain_gateway),
            )
        )
        if fastapi:
            systems.append(
                System(
                    "fastapi-naive",
                    "FastAPI + uvicorn, 6 Redis HGETs + ORT per request (JSON/HTTP)",
                    "end-to-end",
                    TargetSpec("bench.targets:make_fastapi", {"url": fastapi.url}),
                )
            )
        systems.append(
            System(
                "predmesh-orchestrator",
                "predmesh orchestrator Infer, in-process ORT (named features + preprocessing)",
                "model",
                _infer(local.inference.address),
            )
        )
        if orch_worker:
            systems.append(
                System(
                    "predmesh-orch->ortw",
                    "predmesh orchestrator Infer -> ORT worker process (micro-batched)",
                    "model",
                    _infer(orch_worker.address),
                )
            )
        if orch_triton:
            systems.append(
                System(
                    "predmesh-orch->triton",
                    "predmesh orchestrator Infer -> Triton",
                    "model",
                    _infer(orch_triton.address),
                )
            )
        if mlserver:
            systems.append(
                System(
                    "mlserver",
                    "MLServer 1.7.1 V2 ModelInfer (custom ORT runtime, FP32 tensor)",
                    "model",
                    _v2(mlserver.grpc_address, repo),
                )
            )
        if triton:
            systems.append(
                System(
                    "triton",
                    "Triton 2.51 direct V2 ModelInfer (python backend ORT, FP32 tensor)",
                    "model",
                    _v2(triton.grpc_address, repo),
                )
            )
        systems.append(
            System(
                "predmesh-features",
                "predmesh features GetFeatures (1 entity, 6 stored features)",
                "features",
                TargetSpec("bench.targets:make_features", {"address": local.features.address}),
            )
        )
        if feast:
            systems.append(
                System(
                    "feast-server",
                    "Feast 0.67 feature server /get-online-features (Redis online store)",
                    "features",
                    TargetSpec("bench.targets:make_feast", {"url": feast.url}),
                )
            )

        infer_addrs = {"orchestrator": local.inference.address}
        if orch_worker:
            infer_addrs["orchestrator->ortw"] = orch_worker.address
        if orch_triton:
            infer_addrs["orchestrator->triton"] = orch_triton.address
        v2 = {}
        if mlserver:
            v2["mlserver"] = mlserver.grpc_address
        if triton:
            v2["triton"] = triton.grpc_address
        predict_addrs = {"gateway+log": local.gateway_address}
        if mesh.edge_address:
            predict_addrs["envoy"] = mesh.edge_address
        scores = check_scores(
            MODEL, VERSION, repo, plain_gateway, predict_addrs, infer_addrs, v2, fastapi.url if fastapi else None
        )
        log.info("score agreement: %s", scores["max_abs_diff"])
        if args.only:
            wanted = set(args.only.split(","))
            systems = [s for s in systems if s.key in wanted]

        closed_spec = LoadSpec(
            mode="closed",
            concurrency=args.concurrency,
            duration_s=args.duration,
            warmup_requests=200,
            processes=args.client_procs,
        )
        closed = _rounds(systems, closed_spec, args.repeat, "throughput")
        rates = [c["throughput"] for c in closed if "throughput" in c and c["throughput"] > 0]
        rate = args.rate or (max(50.0, math.floor(0.5 * min(rates) / 50) * 50) if rates else 100.0)
        log.info("common open-loop rate: %.0f req/s", rate)
        open_spec = LoadSpec(
            mode="open",
            rate=rate,
            arrival="poisson",
            duration_s=args.duration,
            warmup_requests=200,
            processes=args.client_procs,
        )
        opened = _rounds(systems, open_spec, args.repeat, "p99")
        return {
            "scenario": "compare",
            "model": f"{MODEL}:{VERSION}",
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "client_procs": args.client_procs,
            "repeat": args.repeat,
            "open_rate": rate,
            "score_check": scores,
            "feast_setup": feast_info,
            "unavailable": unavailable,
            "closed": closed,
            "open": opened,
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
    compare.add_argument("--rate", type=float, default=0.0, help="open-loop req/s (0 = half the slowest max)")
    compare.add_argument("--client-procs", type=int, default=1)
    compare.add_argument("--repeat", type=int, default=1, help="round-robin rounds; the median run is reported")
    compare.add_argument("--only", default="", help="comma-separated system keys to measure")
    compare.add_argument("--no-logging", action="store_true")
    compare.add_argument("--no-envoy", action="store_true")
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
