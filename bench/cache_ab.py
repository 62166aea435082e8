"""The prediction cache's shared level, old code vs this tree, in ONE process (not a test; run by hand).

    git archive <rev> | tar -x -C /tmp/before
    python -m bench.cache_ab --before /tmp/before [--concurrency 16] [--rounds 6] [--requests 10000]

`bench.cache_cost` compares modes in separate runs, and on a shared 2-core box its rounds differ by
±25%: too much to see a change of the shared level's own cost. Here the `PredictionCache` and
`RedisSharedCache` modules of `<rev>` (loaded from the export under other module names) and of this
tree run in the same process against the same redis-server, alternating (A B, B A, ...), with this
tree's `Predictor` and the test fakes as upstreams (as in `bench.cache_cost`, redis mode: 90% of
requests repeat one of 1,000 warmed entities, the rest are new). Prints the CPU microseconds per
request (`time.process_time`) of every run and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from predmesh.common.deadline import Deadline
from predmesh.local.procs import RedisServer
from services.gateway.core import cache as new_cache
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.routing import parse_routing
from services.gateway.core.types import PredictInput
from services.gateway.transport import cache_store as new_store
from tests.gateway.fakes import FakeFeatures, FakeModels, ListSink

LIMITS = PredictorLimits(features_timeout_s=1.0, inference_timeout_s=1.0, max_batch_items=64)
WARM = 1000


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def _run(levels: tuple[Any, Any], url: str, requests: int, concurrency: int, seed: int) -> float:
    cache_mod, store_mod = levels
    models = FakeModels()
    shared = store_mod.RedisSharedCache(url, 1.0)
    cache = cache_mod.PredictionCache(100_000, shared)
    predictor = Predictor(FakeFeatures(), models, ModelCatalog(models, 60.0), ListSink(10**7), LIMITS, cache=cache)
    predictor.set_routing(parse_routing({"models": {"fraud": {"cache": {"ttl_s": 600}}}}, f"ab-{seed}-{id(cache)}"))
    rng = random.Random(seed)

    def item(entity: str) -> PredictInput:
        return PredictInput("r", "fraud", "", entity, {"amount": 250.0})

    for i in range(WARM):
        await predictor.predict(item(f"w{i}"), Deadline.after(5.0))
    stream = [f"w{rng.randrange(WARM)}" if rng.random() < 0.9 else f"n{seed}-{id(cache)}-{i}" for i in range(requests)]
    t0 = time.process_time()
    for start in range(0, requests, concurrency):
        await asyncio.gather(
            *(predictor.predict(item(e), Deadline.after(5.0)) for e in stream[start : start + concurrency])
        )
    cpu_us = (time.process_time() - t0) / requests * 1e6
    await shared.close()
    return cpu_us


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_ab")
    parser.add_argument("--before", type=Path, required=True, help="an export (git archive) of the old tree")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args(argv)
    old_cache = _load("before_cache", args.before / "services/gateway/core/cache.py")
    old_store = _load("before_cache_store", args.before / "services/gateway/transport/cache_store.py")
    if not hasattr(old_cache.PredictionCache, "drain"):  # this tree's Predictor.drain calls it

        async def drain(self: Any, timeout_s: float) -> None:
            return None

        old_cache.PredictionCache.drain = drain
    variants = {"before": (old_cache, old_store), "this tree": (new_cache, new_store)}
    results: dict[str, list[float]] = {name: [] for name in variants}
    redis = RedisServer(workdir=Path(tempfile.mkdtemp(prefix="cache-ab-")))
    with redis:
        for r in range(args.rounds):
            for name in list(variants) if r % 2 == 0 else list(reversed(variants)):
                results[name].append(asyncio.run(_run(variants[name], redis.url, args.requests, args.concurrency, r)))
    for name, runs in results.items():
        print(
            f"concurrency {args.concurrency} {name:9s}: CPU us/request "
            + " ".join(f"{x:.0f}" for x in runs)
            + f"  median {statistics.median(runs):.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
