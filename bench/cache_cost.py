"""Gateway core CPU per Predict with the prediction cache off and on (not a test; run by hand).

    python -m bench.cache_cost [--requests 20000] [--hit-ratio 0.9] [--concurrency 16] [--rounds 3]

Runs the gateway's `Predictor` in this process with the test suite's in-memory upstream fakes
(features, orchestrator, log sink: near-zero cost, so the number is the gateway core's own
work, without gRPC serving and without the upstream calls that a hit also saves) and the
cache's shared level on a real redis-server started here. `--hit-ratio` of
the requests repeat one of 1,000 warmed entities, the others are new entities (misses: a
Redis lookup and store). Modes: `off` (no policy), `local` (in-process level only), `redis` (both levels; misses cost a
Redis lookup and store). Prints CPU microseconds per request of this process (user + system,
`time.process_time`) for each mode, alternated for `--rounds` rounds, the measured hit ratio, and
(redis mode) the shared level's Redis round trips (pipelines) per 1,000 requests: a count that the
box's noise does not change (the gateway batches them per coalescing window, see core/cache.py).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from predmesh.common.deadline import Deadline
from predmesh.local.procs import RedisServer
from services.gateway.core.cache import PredictionCache
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.predictor import Predictor, PredictorLimits
from services.gateway.core.routing import parse_routing
from services.gateway.core.types import PredictInput
from services.gateway.transport.cache_store import RedisSharedCache
from tests.gateway.fakes import FakeFeatures, FakeModels, ListSink

LIMITS = PredictorLimits(features_timeout_s=1.0, inference_timeout_s=1.0, max_batch_items=64)
WARM = 1000


class CountingRedis(RedisSharedCache):
    """The Redis shared level, counting its pipelined round trips."""

    def __init__(self, url: str) -> None:
        super().__init__(url, 1.0)
        self.round_trips = 0

    async def get_many(self, keys):  # type: ignore[no-untyped-def]
        self.round_trips += 1
        return await super().get_many(keys)

    async def put_many(self, entries):  # type: ignore[no-untyped-def]
        self.round_trips += 1
        await super().put_many(entries)


async def run(
    mode: str, url: str, requests: int, hit_ratio: float, concurrency: int, seed: int
) -> tuple[float, float, float]:
    models = FakeModels()
    shared = CountingRedis(url) if mode == "redis" else None
    cache = PredictionCache(100_000, shared) if mode != "off" else None
    predictor = Predictor(FakeFeatures(), models, ModelCatalog(models, 60.0), ListSink(10**7), LIMITS, cache=cache)
    route: dict[str, object] = {"cache": {"ttl_s": 600}} if mode != "off" else {}
    predictor.set_routing(parse_routing({"models": {"fraud": route}}, f"bench-{seed}"))
    rng = random.Random(seed)

    def item(entity: str) -> PredictInput:
        return PredictInput("r", "fraud", "", entity, {"amount": 250.0})

    for i in range(WARM):  # warm: every repeated entity scored (and cached) once
        await predictor.predict(item(f"w{i}"), Deadline.after(5.0))
    stream = [f"w{rng.randrange(WARM)}" if rng.random() < hit_ratio else f"n{seed}-{i}" for i in range(requests)]
    infer_before = sum(n for _, _, n in models.infer_calls)
    trips_before = shared.round_trips if shared is not None else 0
    t0 = time.process_time()
    for start in range(0, requests, concurrency):
        await asyncio.gather(
            *(predictor.predict(item(e), Deadline.after(5.0)) for e in stream[start : start + concurrency])
        )
    cpu_us = (time.process_time() - t0) / requests * 1e6
    scored = sum(n for _, _, n in models.infer_calls) - infer_before
    trips = (shared.round_trips - trips_before) * 1000 / requests if shared is not None else 0.0
    await predictor.drain(1.0)
    if shared is not None:
        await shared.close()
    return cpu_us, 1 - scored / requests, trips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_cost")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--hit-ratio", type=float, default=0.9)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    redis = RedisServer(workdir=Path(tempfile.mkdtemp(prefix="cache-cost-")))
    with redis:
        for r in range(args.rounds):
            for mode in ("off", "local", "redis"):
                cpu_us, hits, trips = asyncio.run(
                    run(mode, redis.url, args.requests, args.hit_ratio, args.concurrency, seed=r * 3 + len(mode))
                )
                extra = f", {trips:.0f} Redis round trips/1000 requests" if mode == "redis" else ""
                print(
                    f"round {r} cache {mode:5s}: {cpu_us:7.1f} us CPU/request, hit ratio {hits:.3f}{extra}", flush=True
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
