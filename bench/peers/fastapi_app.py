"""The naive baseline: the classic "serve a model with FastAPI" tutorial design (benchmark peer).

One FastAPI app under uvicorn, JSON over HTTP/1.1. Per request, a sync handler (run in
FastAPI's thread pool) reads each stored feature from Redis with its own HGET (six
round trips), builds the model's input vector by hand and calls onnxruntime on one
row. No batching, no validation beyond pydantic, no defaults registry. Runs in its own
venv (`.predmesh/bench/venvs/fastapi`) and imports nothing from predmesh.

Env: BENCH_REDIS_URL, BENCH_MODEL_PATH (the demo `fraud` v1 model.onnx: raw numbers,
one-hot country/channel, same column order as predmesh's preprocessor).
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import redis
from fastapi import FastAPI
from pydantic import BaseModel

COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "other"]
CHANNELS = ["web", "app", "pos"]
NUMERIC_STORED = ["account_age_days", "txn_count_7d", "avg_txn_amount_30d", "chargeback_rate_90d"]

app = FastAPI()
store = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True)
_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
session = ort.InferenceSession(
    os.environ.get("BENCH_MODEL_PATH", "model.onnx"), sess_options=_options, providers=["CPUExecutionProvider"]
)


class Transaction(BaseModel):
    entity_id: str
    amount: float
    hour_of_day: int
    channel: str


@app.post("/predict")
def predict(txn: Transaction) -> dict[str, object]:
    key = f"features:user:{txn.entity_id}"
    stored = {
        name: store.hget(key, name) for name in [*NUMERIC_STORED, "country", "is_verified"]
    }  # one GET per feature
    row = [float(stored[name] or 0.0) for name in NUMERIC_STORED]
    country = stored["country"] if stored["country"] in COUNTRIES else "other"
    row += [1.0 if country == c else 0.0 for c in COUNTRIES]
    row.append(1.0 if stored["is_verified"] in ("1", "true") else 0.0)
    row += [txn.amount, float(txn.hour_of_day)]
    row += [1.0 if txn.channel == c else 0.0 for c in CHANNELS]
    probs = session.run(["probabilities"], {"input": np.asarray([row], dtype=np.float32)})[0]
    score = float(probs[0, 1])
    return {"entity_id": txn.entity_id, "score": score, "label": "fraud" if score >= 0.5 else "legit"}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
