"""The orchestrator on a REAL tritonserver (nvidia-pytriton binary, python backend on CPU).

Triton starts once for the module (~2-4 s) on a copy of the demo repository with the
generated layout (`--model-config-name=cpu_local`) and is always stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from predmesh.common.errors import Unavailable
from predmesh.local.triton import TritonServer

from ..conftest import DemoModels
from ..remote_helpers import infer_scores, layout_repo, reference_scores, started_app

KEYS = ["fraud:1", "fraud:2", "fraud_nn:1", "fraud_ctx:1"]


@pytest.fixture(scope="module")
def triton(demo_models: DemoModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repo = layout_repo(demo_models, tmp_path_factory.mktemp("triton") / "models")
    server = TritonServer(repo, workdir=tmp_path_factory.mktemp("triton-run"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def triton_stats(triton: TritonServer, name: str, version: str) -> pb.ModelStatistics:
    async with grpc.aio.insecure_channel(triton.grpc_address) as channel:
        reply = await pb_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
            pb.ModelStatisticsRequest(name=name, version=version), timeout=5
        )
    (item,) = reply.model_stats
    return item


async def test_every_demo_model_matches_onnxruntime(triton: TritonServer, demo_models: DemoModels) -> None:
    app = await started_app(triton.model_repository, triton_target=triton.grpc_address, cpu_backend="triton")
    try:
        frame = demo_models.holdout.head(50)
        for key in KEYS:
            assert app.backend.backend_for(app.core.registry.get(*key.split(":"))).name == "triton"  # type: ignore[union-attr]
            got = await infer_scores(app, key, frame)
            np.testing.assert_allclose(got, reference_scores(demo_models, key, frame), atol=1e-6, err_msg=key)
    finally:
        await app.stop()


async def test_triton_batches_concurrent_requests_and_demuxes(triton: TritonServer, demo_models: DemoModels) -> None:
    # 100 calls at once through the python backend: a generous per-call budget (the subject is batching and
    # demultiplexing; the default 2 s was exceeded once on a CI box at load 9)
    app = await started_app(
        triton.model_repository, triton_target=triton.grpc_address, cpu_backend="triton", backend_timeout_ms=15000.0
    )
    before = await triton_stats(triton, "fraud_nn", "1")  # after start: warm-up inferences excluded
    try:
        frame = demo_models.holdout.head(300).reset_index(drop=True)
        expected = reference_scores(demo_models, "fraud_nn:1", frame)
        sizes = [1 + (i * 3) % 5 for i in range(100)]
        starts = np.cumsum([0, *sizes[:-1]])
        results = await asyncio.gather(
            *(infer_scores(app, "fraud_nn:1", frame.iloc[s : s + n]) for s, n in zip(starts, sizes, strict=True))
        )
        for s, n, got in zip(starts, sizes, results, strict=True):
            np.testing.assert_allclose(got, expected[s : s + n], atol=1e-6)
        # No double batching: the orchestrator sends directly, Triton's dynamic batcher batches.
        assert app.backend.batch_stats(app.core.registry.get("fraud_nn")) is None  # type: ignore[union-attr]
    finally:
        await app.stop()
    after = await triton_stats(triton, "fraud_nn", "1")
    requests = after.inference_stats.success.count - before.inference_stats.success.count
    executions = after.execution_count - before.execution_count
    assert requests == 100 and after.inference_count - before.inference_count == sum(sizes)
    assert executions < requests, (executions, requests)


async def test_ensemble_members_on_triton_and_in_process(triton: TritonServer, demo_models: DemoModels) -> None:
    """fraud_ens:1: fraud_nn:1 (device gpu) runs on Triton, fraud:1 in-process, concurrently."""
    app = await started_app(triton.model_repository, triton_target=triton.grpc_address)
    try:
        assert app.core is not None
        names = {
            str(mv): app.backend.backend_for(mv).name
            for mv in app.core.registry.members(app.core.registry.get("fraud_ens"))
        }
        assert names == {"fraud:1": "onnxruntime_local", "fraud_nn:1": "triton"}
        frame = demo_models.holdout.head(50)
        expected = 0.5 * reference_scores(demo_models, "fraud:1", frame) + 0.5 * reference_scores(
            demo_models, "fraud_nn:1", frame
        )
        np.testing.assert_allclose(await infer_scores(app, "fraud_ens:1", frame), expected, atol=1e-5)
    finally:
        await app.stop()


async def test_a_request_of_the_wrong_width_fails_alone_and_the_server_stays_up(triton: TritonServer) -> None:
    """fraud:3 sent another version's width: INVALID_ARGUMENT for that request only, while a good
    request batched with it is answered (before: ONNX Runtime refused the concatenated batch, so one
    client's bad request failed every request of its dynamic batch, with INTERNAL)."""
    import onnxruntime as ort

    path = triton.model_repository / "fraud" / "3" / "model.onnx"
    width = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[-1]
    assert isinstance(width, int) and width > 2

    def request(columns: int) -> pb.ModelInferRequest:
        message = pb.ModelInferRequest(model_name="fraud", model_version="3")
        tensor = message.inputs.add()
        tensor.name, tensor.datatype = "input", "FP32"
        tensor.shape.extend([1, columns])
        message.outputs.add().name = "probabilities"
        message.raw_input_contents.append(np.ones((1, columns), dtype=np.float32).tobytes())
        return message

    async with grpc.aio.insecure_channel(triton.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(3):
            bad: Any
            good: Any
            bad, good = await asyncio.gather(
                stub.ModelInfer(request(width - 2), timeout=10),
                stub.ModelInfer(request(width), timeout=10),
                return_exceptions=True,
            )
            assert isinstance(bad, grpc.aio.AioRpcError) and "input must be [rows, " in str(bad.details())
            assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert isinstance(good, pb.ModelInferResponse)
            probabilities = np.frombuffer(good.raw_output_contents[0], dtype=np.float32)
            assert probabilities.shape == (2,) and abs(float(probabilities.sum()) - 1.0) < 1e-5
    assert triton.running()


async def test_killed_triton_is_unavailable_quickly(triton: TritonServer, demo_models: DemoModels) -> None:
    """Runs last in this module: kills the module's server (the fixture's stop() copes)."""
    app = await started_app(triton.model_repository, triton_target=triton.grpc_address, cpu_backend="triton")
    try:
        frame = demo_models.holdout.head(2)
        await infer_scores(app, "fraud:1", frame)
        triton.kill()
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await infer_scores(app, "fraud:1", frame)
        assert time.monotonic() - started < 2.0
    finally:
        await app.stop()
