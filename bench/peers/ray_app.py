"""The same job as a Ray Serve composition (benchmark peer): how users most often compose a
Python inference pipeline.

Two deployments behind Ray's HTTP proxy, JSON over HTTP/1.1 with the FastAPI baseline's
request and answer (`POST /predict {entity_id, amount, hour_of_day, channel}` ->
`{entity_id, score, label}`):
- `Features`: reads the user's hash from Redis (one HGETALL, redis.asyncio) and returns
  the six stored features;
- `Model`: the ingress; asks `Features` through a deployment handle, builds the model's
  input row exactly like the FastAPI baseline (raw numbers, one-hot country/channel) and
  runs the demo `fraud` v1 ONNX model with onnxruntime (1 intra-op thread).

Run in its own venv (`bash bench/setup_peers.sh ray`); imports nothing from predmesh.
Starts a local Ray (loopback only: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 and node ip
127.0.0.1; `--num-cpus` from BENCH_RAY_CPUS, default 2), deploys, writes BENCH_RAY_READY
(a file path) once the application answers, and serves until SIGTERM/SIGINT, then shuts
Serve and Ray down. Env: BENCH_REDIS_URL, BENCH_MODEL_PATH, BENCH_RAY_PORT,
BENCH_RAY_MAX_ONGOING (max_ongoing_requests per replica; Ray's default of 5 would
throttle the proxy).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "other"]
CHANNELS = ["web", "app", "pos"]
NUMERIC_STORED = ["account_age_days", "txn_count_7d", "avg_txn_amount_30d", "chargeback_rate_90d"]
STORED = [*NUMERIC_STORED, "country", "is_verified"]
MAX_ONGOING = int(os.environ.get("BENCH_RAY_MAX_ONGOING", "256"))
# No per-request access log, like the other HTTP peers (uvicorn/feast run with --no-access-log).
QUIET = {"enable_access_log": False, "log_level": "WARNING"}


def model_row(stored: dict[str, Any], txn: dict[str, Any]) -> list[float]:
    """The 17 model inputs, in the order the demo model was trained with."""
    row = [float(stored.get(name) or 0.0) for name in NUMERIC_STORED]
    country = stored.get("country") if stored.get("country") in COUNTRIES else "other"
    row += [1.0 if country == c else 0.0 for c in COUNTRIES]
    row.append(1.0 if stored.get("is_verified") in ("1", "true") else 0.0)
    row += [float(txn["amount"]), float(txn["hour_of_day"])]
    row += [1.0 if txn["channel"] == c else 0.0 for c in CHANNELS]
    return row


def build_app(redis_url: str, model_path: str) -> Any:
    from ray import serve

    @serve.deployment(max_ongoing_requests=MAX_ONGOING, logging_config=QUIET)
    class Features:
        def __init__(self, url: str) -> None:
            import redis.asyncio as aioredis

            self.redis = aioredis.Redis.from_url(url, decode_responses=True)

        async def get(self, entity_id: str) -> dict[str, Any]:
            stored: dict[Any, Any] = await self.redis.hgetall(f"features:user:{entity_id}")
            return {name: stored.get(name) for name in STORED}

    @serve.deployment(max_ongoing_requests=MAX_ONGOING, logging_config=QUIET)
    class Model:
        def __init__(self, features: Any, path: str) -> None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
            self.features = features

        async def __call__(self, request: Any) -> dict[str, Any]:
            import numpy as np

            txn = await request.json()
            stored = await self.features.get.remote(txn["entity_id"])
            row = model_row(stored, txn)
            probs = self.session.run(["probabilities"], {"input": np.asarray([row], dtype=np.float32)})[0]
            score = float(probs[0, 1])
            return {"entity_id": txn["entity_id"], "score": score, "label": "fraud" if score >= 0.5 else "legit"}

    return Model.bind(Features.bind(redis_url), model_path)  # type: ignore[attr-defined]


def _patient_startup(wait_s: float) -> None:
    """Let `ray.init` wait up to `wait_s` for the raylet to register (Ray hard-codes 30 s, which
    a loaded 2-core machine exceeds: the raylet first waits for its dashboard agent, whose
    imports alone can take that long). The raylet's own wait is RAY_raylet_start_wait_time_s."""
    import time

    import ray._private.services as services

    get_node = services.get_node

    def patient(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return get_node(*args, **kwargs)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    services.get_node = patient


def main() -> None:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray import serve

    _patient_startup(float(os.environ.get("BENCH_RAY_STARTUP_WAIT_S", "150")))

    port = int(os.environ["BENCH_RAY_PORT"])
    ray.init(
        num_cpus=int(os.environ.get("BENCH_RAY_CPUS", "2")),
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = build_app(os.environ["BENCH_REDIS_URL"], os.environ["BENCH_MODEL_PATH"])
    serve.run(app, name="fraud", route_prefix="/predict")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ready = os.environ.get("BENCH_RAY_READY")
    if ready:
        Path(ready).write_text("ready\n")
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
