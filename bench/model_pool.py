"""Model-pool benchmark: 200 segment models, a pool that holds 20, a Zipf-distributed mix.

    python -m bench.model_pool [--models 200] [--budget 20] [--requests 4000] [--concurrency 8]
                               [--zipf 1.1] [--backend local|ort_worker] [--via core|grpc] [--out DIR]

Starts a real InferenceApp (gRPC server included; `--via core` calls its core in process,
so the numbers are the orchestrator + backend; `--via grpc` sends each request as an
InferenceService.Infer RPC over loopback, one channel) on a repository of
generated segment models (predmesh/demo/segments.py), with
`pool_max_models=budget` and no eager versions, and sends `--requests` one-row requests
at `--concurrency` in flight, model i drawn with probability ~ 1/rank^s (ranks shuffled
with a fixed seed). A request is *hot* when its version was loaded when it arrived,
*cold* when it waited for a load. Prints and writes JSON: hit ratio, p50/p99 of hot and
cold requests, loads/evictions per second, peak loaded versions (the pool never held
more than the budget), and for `ort_worker` the worker's RSS.

Bounded: the default run takes ~10-20 s on 2 shared cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from predmesh.demo.segments import FEATURES, segment_name, write_segment_models
from predmesh.demo.train import demo_dataset
from predmesh.models.pool import PooledBackend, State
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.app import InferenceApp
from services.inference.settings import InferenceSettings
from services.inference.transport.converters import row_to_proto


def zipf_draws(models: int, n: int, s: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, models + 1) ** s
    ranks = rng.choice(models, n, p=weights / weights.sum())
    order = rng.permutation(models)  # which segment has which popularity rank
    out: np.ndarray = order[ranks]
    return out


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


async def run(args: argparse.Namespace, repo: Path) -> dict[str, Any]:
    worker = None
    extra: dict[str, Any] = {}
    if args.backend == "ort_worker":
        from predmesh.local.triton import OrtWorker

        worker = OrtWorker(repo, env={"PREDMESH_ORTWORKER_MODEL_CONTROL": "explicit"}, workdir=repo.parent / "w")
        worker.start()
        extra = {"ort_workers": worker.address, "batch_max_wait_ms": 0.2}
    settings = InferenceSettings(
        model_repository=repo,
        host="127.0.0.1",
        port=0,
        poll_interval_ms=0,
        warmup_runs=0,
        pool_max_models=args.budget,
        **extra,
    )
    app = InferenceApp(settings)
    await app.start()
    assert app.core is not None
    core = app.core
    _, holdout = demo_dataset(0)
    rows = holdout[FEATURES].to_numpy().tolist()
    draws = zipf_draws(args.models, args.requests, args.zipf)
    pool = app.backend.backend_for(core.registry.get(segment_name(0), "1"))
    assert isinstance(pool, PooledBackend)
    hot: list[float] = []
    cold: list[float] = []
    rss: list[int] = []
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for n, drawn in enumerate(draws):
        queue.put_nowait((n, int(drawn)))

    channel = grpc.aio.insecure_channel(app.address)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)

    async def client() -> None:
        while not queue.empty():
            i, d = queue.get_nowait()
            name = segment_name(d)
            loaded = pool.state(core.registry.get(name, "1")) is State.LOADED
            row = rows[i % len(rows)]
            started = time.perf_counter()
            if args.via == "grpc":
                request = inference_pb2.InferRequest(
                    model=name, version="1", feature_names=FEATURES, rows=[row_to_proto(row)]
                )
                await stub.Infer(request, timeout=30)
            else:
                await core.infer(name, "1", FEATURES, [row])
            (hot if loaded else cold).append(time.perf_counter() - started)

    async def sample_rss() -> None:
        while worker is not None and worker.pid is not None:
            rss.append(_rss_kib(worker.pid))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample_rss())
    loads0, evictions0 = pool.stats.loads, pool.stats.evictions
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - started
    sampler.cancel()
    await channel.close()
    stats = pool.stats
    result = {
        "backend": args.backend,
        "via": args.via,
        "models": args.models,
        "budget_models": args.budget,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "zipf_s": args.zipf,
        "seconds": round(elapsed, 2),
        "req_per_s": round(args.requests / elapsed, 1),
        "hit_ratio": round(len(hot) / args.requests, 4),
        "hot_p50_ms": round(_pct(hot, 50), 3),
        "hot_p99_ms": round(_pct(hot, 99), 3),
        "cold_p50_ms": round(_pct(cold, 50), 3),
        "cold_p99_ms": round(_pct(cold, 99), 3),
        "loads": stats.loads - loads0,
        "evictions": stats.evictions - evictions0,
        "loads_per_s": round((stats.loads - loads0) / elapsed, 1),
        "evictions_per_s": round((stats.evictions - evictions0) / elapsed, 1),
        "mean_load_ms": round(stats.load_seconds_total / max(stats.loads, 1) * 1000, 3),
        "peak_loaded_models": stats.peak_models,
        "distinct_models_requested": len(set(draws.tolist())),
    }
    if rss:
        result["worker_rss_max_mib"] = round(max(rss) / 1024, 1)
    await app.stop()
    if worker is not None:
        worker.stop()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--backend", choices=["local", "ort_worker"], default="local")
    parser.add_argument("--via", choices=["core", "grpc"], default="core")
    parser.add_argument("--out", type=Path, default=Path(".predmesh/bench/results"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="predmesh-pool-") as tmp:
        repo = Path(tmp) / "models"
        write_segment_models(repo, args.models)
        result = asyncio.run(run(args, repo))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"model_pool-{args.backend}-{args.via}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
