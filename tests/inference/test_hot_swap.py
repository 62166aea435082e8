"""Hot swap under load through a real grpc.aio server, on the in-process ONNX Runtime
backend, on a real ORT worker process (KServe v2 gRPC, micro-batched) and on a real
tritonserver in explicit model-control mode (the orchestrator drives its loads).

Concurrent clients call Infer on the default version while version 2 appears on disk
(polled), becomes the default, and version 1 is removed: zero failed requests,
responses switch from 1 to 2, version 1 is unloaded after its drain period, and a
client pinned to version 1 is served until it is gone, then gets NOT_FOUND. With the
worker, both processes poll the same repository: the orchestrator publishes version 2
only once the worker serves it, and the worker drains longer than the orchestrator so
requests the orchestrator still routes to version 1 find it loaded. With Triton, the
orchestrator asks Triton to load version 2 when it appears and to drop version 1 only
after draining it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc.aio import InferenceServerClient

from predmesh.local.procs import ManagedProcess
from predmesh.local.triton import OrtWorker, TritonServer
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.app import InferenceApp
from services.inference.transport.converters import row_to_proto
from services.inference.triton.layout import PYTHON_MODEL, write_triton_layout

from ..models.builders import classifier_spec, linear_onnx, write_model
from .conftest import make_settings

CLIENTS = 6
DRAIN_MS = 400.0
BEFORE_S = 0.5  # steady traffic on version 1 before version 2 appears
OVERLAP_S = 0.6  # at least this long between version 2 appearing and version 1 being removed
AFTER_S = 1.4  # traffic after version 1 is removed (covers its drain)
SWAP_TIMEOUT_S = 20.0  # version 2 must be served by then (Triton's python backend takes ~1-2 s to load)


def add_version(repo: Path, version: str, weight: float, triton: bool = False) -> None:
    """Write a version into a staging dir beside the repository, then rename it into place (atomic)."""
    staging = repo.parent / "staging"
    write_model(staging, classifier_spec("swap", version), linear_onnx(np.array([[weight, -weight]]), softmax=True))
    if triton:  # the local Triton config runs each version's model.py (python backend)
        shutil.copyfile(PYTHON_MODEL, staging / "swap" / version / "model.py")
    os.rename(staging / "swap" / version, repo / "swap" / version)


def backend_server(backend: str, repo: Path, workdir: Path) -> tuple[ManagedProcess | None, dict[str, object]]:
    """The backend process to run (None: in-process ONNX Runtime) and the orchestrator settings for it."""
    if backend == "ort_worker":
        worker = OrtWorker(
            repo,
            env={"PREDMESH_ORTWORKER_POLL_INTERVAL_MS": "50", "PREDMESH_ORTWORKER_DRAIN_MS": str(DRAIN_MS * 3)},
            workdir=workdir,
        )
        return worker, {"ort_workers": worker.address}
    if backend == "triton":
        write_triton_layout(repo)
        triton = TritonServer(repo, workdir=workdir, extra_args=["--model-control-mode=explicit", "--load-model=*"])
        settings = {"triton_target": triton.grpc_address, "cpu_backend": "triton", "triton_model_control": True}
        return triton, settings
    return None, {}


@pytest.mark.parametrize("backend", ["local", "ort_worker", "triton"])
async def test_swap_under_load_has_zero_errors(tmp_path: Path, backend: str) -> None:
    repo = tmp_path / "models"
    (repo / "swap").mkdir(parents=True)
    add_version(repo, "1", 1.0, triton=backend == "triton")
    server, extra = backend_server(backend, repo, tmp_path / backend)
    if server is not None:
        await asyncio.to_thread(server.start)
    app = InferenceApp(make_settings(repo, poll_interval_ms=50, drain_ms=DRAIN_MS, **extra))
    try:
        await app.start()
    except BaseException:
        if server is not None:
            await asyncio.to_thread(server.stop)
        raise
    seen: list[tuple[float, str, float]] = []  # (time, version, score) of default-version calls
    errors: list[str] = []
    pinned: list[tuple[float, str]] = []  # (time, status) of calls pinned to version 1
    feature_names = ["amount"]
    rows = [row_to_proto([0.5])]
    marks: dict[str, float] = {}
    v2_served = asyncio.Event()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            give_up = time.monotonic() + SWAP_TIMEOUT_S + BEFORE_S + OVERLAP_S + AFTER_S

            def running() -> bool:
                now = time.monotonic()
                return now < give_up and ("removed" not in marks or now < marks["removed"] + AFTER_S)

            async def client() -> None:
                while running():
                    try:
                        reply = await stub.Infer(
                            inference_pb2.InferRequest(model="swap", feature_names=feature_names, rows=rows), timeout=2
                        )
                        seen.append((time.monotonic(), reply.model_version, reply.predictions[0].score))
                        if reply.model_version == "2":
                            v2_served.set()
                    except grpc.aio.AioRpcError as err:
                        errors.append(f"{err.code().name}: {err.details()}")

            async def pinned_client() -> None:
                while running():
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
                await asyncio.sleep(BEFORE_S)
                marks["added"] = time.monotonic()
                await asyncio.to_thread(add_version, repo, "2", -1.0, backend == "triton")
                await asyncio.sleep(OVERLAP_S)
                with contextlib.suppress(TimeoutError):  # remove version 1 only once version 2 serves
                    await asyncio.wait_for(v2_served.wait(), SWAP_TIMEOUT_S)
                marks["removed"] = time.monotonic()
                await asyncio.to_thread(os.rename, repo / "swap" / "1", repo.parent / "removed")

            await asyncio.gather(*(client() for _ in range(CLIENTS)), pinned_client(), operator())
        assert app.core is not None
        lifecycle = app.core.lifecycle
        for _ in range(200):  # the unload follows the drain (on Triton: after its model reload)
            if lifecycle.unloaded:
                break
            await asyncio.sleep(0.05)
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
        if isinstance(server, TritonServer):  # Triton dropped version 1 only after the drain
            await assert_triton_serves(server, ready={"2"}, gone={"1"})
        switch_ms = (first_v2 - marks["added"]) * 1000
        unloaded_ms = (time.monotonic() - marks["removed"]) * 1000
        print(
            f"\nhot swap ({backend}): {len(seen)} requests, {len(errors)} errors, switched after {switch_ms:.0f} ms, "
            f"old version unloaded within {unloaded_ms:.0f} ms of its removal"
        )
    finally:
        await app.stop()
        if server is not None:
            await asyncio.to_thread(server.stop)


async def assert_triton_serves(triton: TritonServer, ready: set[str], gone: set[str]) -> None:
    client = InferenceServerClient(triton.grpc_address)
    try:
        for version in ready:
            assert await client.is_model_ready("swap", version)
        for version in gone:
            assert not await client.is_model_ready("swap", version)
    finally:
        await client.close()
