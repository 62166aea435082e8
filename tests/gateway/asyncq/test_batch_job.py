"""`predmesh batch score` against a real gateway (upstream fakes): a 100k-row job killed with
SIGKILL half-way and run again yields exactly one output row per input row, scores equal to
PredictBatch's; checkpoints of another job are refused."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from predmesh.common.values import scalar_to_value
from predmesh.v1 import prediction_pb2, prediction_pb2_grpc
from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings
from tests.gateway.transport.upstream_fakes import Upstreams

ROOT = Path(__file__).resolve().parents[3]
ROWS = 100_000


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    fakes = Upstreams()
    await fakes.start()
    settings = GatewaySettings(
        port=0,
        grace_s=0.2,
        features_target=fakes.address,
        inference_target=fakes.address,
        api_keys={"bulk": {"models": ["fraud"], "priority": "batch"}},
        max_batch_items=2048,
        features_timeout_ms=10000,  # the in-process fakes are slow with 2000 entities on a shared CPU
        inference_timeout_ms=10000,
    )
    app = GatewayApp(settings)
    await app.start()
    yield app.address
    await app.stop()
    await fakes.stop()


def job(address: str, src: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "predmesh.cli", "batch", "score", str(src), "--model", "fraud", "--out", str(out),
        "--target", address, "--plaintext", "--api-key", "bulk", "--chunk-rows", "5000", "--batch-items", "2000",
        "--timeout", "30",
    ]  # fmt: skip


async def test_killed_job_resumes_to_exactly_one_row_per_input_row(gateway: str, tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"entity_id": [f"u{i}" for i in range(ROWS)], "amount": [float(i % 997) for i in range(ROWS)]}), src
    )
    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = await asyncio.create_subprocess_exec(
        *job(gateway, src, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(1200):  # until half the chunks are checkpointed
        if len(list(parts.glob("chunk-*.parquet"))) >= 10:
            break
        await asyncio.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    done_before = len(list(parts.glob("chunk-*.parquet")))
    assert 10 <= done_before < 20 and not out.exists()

    second = await asyncio.create_subprocess_exec(
        *job(gateway, src, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(second.communicate(), 120)
    assert second.returncode == 0, stdout.decode()
    assert f'"scored_now": {ROWS - done_before * 5000}' in stdout.decode()  # checkpoints were not scored again
    result = pq.read_table(out)
    assert result.num_rows == ROWS
    assert result.column("row").to_pylist() == list(range(ROWS))
    assert [e for e in result.column("error").to_pylist() if e][:1] == []
    scores = result.column("score").to_pylist()
    assert scores[:3] == pytest.approx([0.0, 0.001, 0.002])

    sample = [0, 1, 4999, 5000, 50_001, ROWS - 1]  # the same rows through PredictBatch directly
    async with grpc.aio.insecure_channel(gateway) as channel:
        direct = await prediction_pb2_grpc.PredictionServiceStub(channel).PredictBatch(
            prediction_pb2.PredictBatchRequest(
                model="fraud",
                items=[
                    prediction_pb2.BatchItem(entity_id=f"u{i}", context={"amount": scalar_to_value(float(i % 997))})
                    for i in sample
                ],
            ),
            metadata=(("x-api-key", "bulk"),),
            timeout=10,
        )
    assert [scores[i] for i in sample] == pytest.approx([r.prediction.score for r in direct.results])

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"entity_id": ["a"], "amount": [1.0]}), other)
    refused = await asyncio.create_subprocess_exec(
        *job(gateway, other, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, stderr = await refused.communicate()
    assert refused.returncode == 1 and b"belongs to another job" in stderr
