"""Hot swap under load through a real grpc.aio server, on the in-process ONNX Runtime
backend and on a real ORT worker process (KServe v2 gRPC, micro-batched).

Concurrent clients call Infer on the default version while version 2 appears on disk
(polled), becomes the default, and version 1 is removed: zero failed requests,
responses switch from 1 to 2, version 1 is unloaded after its drain period, and a
client pinned to version 1 is served until it is gone, then gets NOT_FOUND. With the
worker, both processes poll the same repository: the orchestrator publishes version 2
only once the worker serves it, and the worker drains longer than the orchestrator so
requests the orchestrator still routes to version 1 find it loaded.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from predmesh.local.triton import OrtWorker
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.app import InferenceApp
from services.inference.transport.converters import row_to_proto

from .builders import classifier_spec, linear_onnx, write_model
from .conftest import make_settings

CLIENTS = 6
DURATION_S = 2.5
DRAIN_MS = 400.0


def add_version(repo: Path, version: str, weight: float) -> None:
    """Write a version into a hidden staging dir, then rename it into place (atomic)."""
    staging = repo / ".staging"
    write_model(staging, classifier_spec("swap", version), linear_onnx(np.array([[weight, -weight]]), softmax=True))
    os.rename(staging / "swap" / version, repo / "swap" / version)


@pytest.mark.parametrize("backend", ["local", "ort_worker"])
async def test_swap_under_load_has_zero_errors(tmp_path: Path, backend: str) -> None:
    repo = tmp_path / "models"
    (repo / "swap").mkdir(parents=True)
    add_version(repo, "1", 1.0)
    worker: OrtWorker | None = None
    extra: dict[str, object] = {}
    if backend == "ort_worker":
        worker = OrtWorker(
            repo,
            env={"PREDMESH_ORTWORKER_POLL_INTERVAL_MS": "50", "PREDMESH_ORTWORKER_DRAIN_MS": str(DRAIN_MS * 3)},
            workdir=tmp_path / "worker",
        )
        await asyncio.to_thread(worker.start)
        extra = {"ort_workers": worker.address}
    app = InferenceApp(make_settings(repo, poll_interval_ms=50, drain_ms=DRAIN_MS, **extra))
    try:
        await app.start()
    except BaseException:
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        raise
    seen: list[tuple[float, str, float]] = []  # (time, version, score) of default-version calls
    errors: list[str] = []
    pinned: list[tuple[float, str]] = []  # (time, status) of calls pinned to version 1
    feature_names = ["amount"]
    rows = [row_to_proto([0.5])]
    marks: dict[str, float] = {}
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            stop_at = time.monotonic() + DURATION_S

            async def client() -> None:
                while time.monotonic() < stop_at:
                    try:
                        reply = await stub.Infer(
                            inference_pb2.InferRequest(model="swap", feature_names=feature_names, rows=rows), timeout=2
                        )
                        seen.append((time.monotonic(), reply.model_version, reply.predictions[0].score))
                    except grpc.aio.AioRpcError as err:
                        errors.append(f"{err.code().name}: {err.details()}")

            async def pinned_client() -> None:
                while time.monotonic() < stop_at:
                    try:
                        await stub.Infer(
                            inference_pb2.InferRequest(
                                model="swap", version="1", feature_names=feature_names, rows=rows
                            ),
                            timeout=2,
                        )
                        pinned.append((time.monotonic(), "OK"))
                    except grpc.aio.AioRpcError as err:
                        pinned.append((time.monotonic(), err.code().name))
                    await asyncio.sleep(0.005)

            async def operator() -> None:
                await asyncio.sleep(0.5)
                marks["added"] = time.monotonic()
                await asyncio.to_thread(add_version, repo, "2", -1.0)
                await asyncio.sleep(0.6)
                marks["removed"] = time.monotonic()
                await asyncio.to_thread(os.rename, repo / "swap" / "1", repo / ".removed")

            await asyncio.gather(*(client() for _ in range(CLIENTS)), pinned_client(), operator())
        await asyncio.sleep(DRAIN_MS / 1000.0)
        assert app.core is not None
        lifecycle = app.core.lifecycle
        assert errors == [], errors[:5]
        versions = [v for _, v, _ in seen]
        first_v2 = next(t for t, v, _ in seen if v == "2")
        assert versions[0] == "1" and versions[-1] == "2"
        assert all(v == "2" for t, v, _ in seen if t > first_v2 + 0.05)  # switched, no flapping
        # Each response's score belongs to the version it names (v1: P(fraud)=sigmoid(-1), v2: sigmoid(+1)).
        for _, v, score in seen:
            assert (score < 0.5) == (v == "1")
        # Pinned to 1: served while it drains, NOT_FOUND only after removal + drain.
        not_found = [t for t, status in pinned if status != "OK"]
        assert {s for _, s in pinned} <= {"OK", "NOT_FOUND"}
        assert not_found and min(not_found) >= marks["removed"] + DRAIN_MS / 1000.0 * 0.9
        assert any(status == "OK" and t > marks["removed"] + 0.1 for t, status in pinned)
        assert lifecycle.unloaded == ["swap:1"]
        switch_ms = (first_v2 - marks["added"]) * 1000
        print(f"\nhot swap ({backend}): {len(seen)} requests, {len(errors)} errors, switched after {switch_ms:.0f} ms")
    finally:
        await app.stop()
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        shutil.rmtree(repo / ".removed", ignore_errors=True)
