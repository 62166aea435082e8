"""Real ORT worker processes: KServe v2 protocol, orchestrator batching onto a pool, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from predmesh.common.errors import ResourceExhausted
from predmesh.local.triton import OrtWorker
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.transport.converters import row_to_proto
from tests.inference.conftest import DemoModels
from tests.inference.remote_helpers import NAMES, frame_rows, infer_scores, reference_scores, started_app


@pytest.fixture(scope="module")
def workers(demo_models: DemoModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[OrtWorker]]:
    """Two real worker processes on the demo repository, for the whole module."""
    pool: list[OrtWorker] = []
    try:
        for i in range(2):
            worker = OrtWorker(demo_models.repo, workdir=tmp_path_factory.mktemp(f"ortworker{i}"), name=f"w{i}")
            pool.append(worker)
            worker.start()
        yield pool
    finally:
        for worker in pool:
            worker.stop()


def targets(pool: list[OrtWorker]) -> str:
    return ",".join(w.address for w in pool)


async def stats(address: str, name: str, version: str) -> pb.ModelStatistics:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await pb_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
            pb.ModelStatisticsRequest(name=name, version=version), timeout=2
        )
    (item,) = reply.model_stats
    return item


async def test_kserve_protocol_typed_and_raw_contents_and_errors(
    workers: list[OrtWorker], demo_models: DemoModels
) -> None:
    frame = demo_models.holdout.head(7)
    expected = reference_scores(demo_models, "fraud_nn:1", frame)
    from predmesh.demo.train import frame_columns
    from predmesh.models.preprocess import Preprocessor

    matrix = Preprocessor(demo_models.trained["fraud_nn:1"].spec).transform_columns(frame_columns(frame), 7)
    async with grpc.aio.insecure_channel(workers[0].address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert (await stub.ServerLive(pb.ServerLiveRequest(), timeout=2)).live
        assert (await stub.ServerReady(pb.ServerReadyRequest(), timeout=2)).ready
        assert (await stub.ModelReady(pb.ModelReadyRequest(name="fraud_ctx"), timeout=2)).ready
        meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name="fraud"), timeout=2)
        # The default is fraud:3: the 17 user columns + merchant risk + 5 merchant categories.
        assert list(meta.versions) == ["1", "2", "3"] and list(meta.inputs[0].shape) == [-1, 23]
        config = await stub.ModelConfig(pb.ModelConfigRequest(name="fraud_nn"), timeout=2)
        assert config.config.input[0].name == "input"

        def request(**tensor: object) -> pb.ModelInferRequest:
            spec = {"name": "input", "datatype": "FP32", "shape": list(matrix.shape)} | tensor
            return pb.ModelInferRequest(
                model_name="fraud_nn", id="r1", inputs=[pb.ModelInferRequest.InferInputTensor(**spec)]
            )

        typed = request(contents=pb.InferTensorContents(fp32_contents=matrix.ravel().tolist()))
        reply = await stub.ModelInfer(typed, timeout=2)
        out = np.frombuffer(reply.raw_output_contents[0], "<f4").reshape(list(reply.outputs[0].shape))
        np.testing.assert_allclose(out, expected, atol=1e-6)
        assert (reply.id, reply.model_version, reply.outputs[0].datatype) == ("r1", "1", "FP32")

        raw = request()
        raw.raw_input_contents.append(matrix.tobytes())
        reply = await stub.ModelInfer(raw, timeout=2)
        np.testing.assert_allclose(
            np.frombuffer(reply.raw_output_contents[0], "<f4").reshape(7, 2), expected, atol=1e-6
        )

        bad = {
            "wrong name": request(name="x"),
            "wrong type": request(datatype="FP64"),
            "wrong width": request(shape=[7, 3]),
            "short data": request(contents=pb.InferTensorContents(fp32_contents=[1.0])),
        }
        for what, message in bad.items():
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ModelInfer(message, timeout=2)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
        unknown = pb.ModelInferRequest(model_name="nope", inputs=raw.inputs, raw_input_contents=raw.raw_input_contents)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ModelInfer(unknown, timeout=2)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    item = await stats(workers[0].address, "fraud_nn", "1")
    assert item.inference_count >= 14 and item.execution_count >= 2 and item.inference_stats.success.ns > 0


async def test_orchestrator_batches_onto_the_pool_and_demuxes(
    workers: list[OrtWorker], demo_models: DemoModels
) -> None:
    before = [await stats(w.address, "fraud", "2") for w in workers]
    # warmup_runs=0: exact batch/row accounting below (warm-up batches would count too).
    app = await started_app(
        demo_models.repo, ort_workers=targets(workers), batch_max_rows=64, batch_max_wait_ms=2.0, warmup_runs=0
    )
    try:
        assert app.backend.backend_for(app.core.registry.get("fraud")).name == "batching(ort_worker)"  # type: ignore[union-attr]
        frame = demo_models.holdout.head(400).reset_index(drop=True)
        expected = reference_scores(demo_models, "fraud:2", frame)
        sizes = [1 + (i * 5) % 7 for i in range(100)]  # 1..7 rows, 399 rows in all
        starts = np.cumsum([0, *sizes[:-1]])
        n_rows = sum(sizes)
        results = await asyncio.gather(
            *(infer_scores(app, "fraud:2", frame.iloc[s : s + n]) for s, n in zip(starts, sizes, strict=True))
        )
        for s, n, got in zip(starts, sizes, results, strict=True):
            np.testing.assert_allclose(got, expected[s : s + n], atol=1e-6)
        batch_stats = app.backend.batch_stats(app.core.registry.get("fraud", "2"))  # type: ignore[union-attr]
        assert batch_stats is not None and batch_stats.requests == 100 and batch_stats.rows == n_rows
        assert batch_stats.batches < 50 and batch_stats.mean_batch_requests > 2, batch_stats
    finally:
        await app.stop()
    after = [await stats(w.address, "fraud", "2") for w in workers]
    executions = [a.execution_count - b.execution_count for a, b in zip(after, before, strict=True)]
    rows = sum(a.inference_count - b.inference_count for a, b in zip(after, before, strict=True))
    assert rows == n_rows and sum(executions) == batch_stats.batches
    assert all(e > 0 for e in executions), executions  # both workers of the pool served


async def test_full_queue_is_resource_exhausted(workers: list[OrtWorker], demo_models: DemoModels) -> None:
    app = await started_app(demo_models.repo, ort_workers=workers[0].address, batch_max_queue=2, batch_max_inflight=1)
    try:
        frame = demo_models.holdout.head(40).reset_index(drop=True)
        expected = reference_scores(demo_models, "fraud_ctx:1", frame)
        results = await asyncio.gather(
            *(infer_scores(app, "fraud_ctx:1", frame.iloc[i : i + 1]) for i in range(40)), return_exceptions=True
        )
    finally:
        await app.stop()
    rejected = [r for r in results if isinstance(r, ResourceExhausted)]
    assert rejected and len(rejected) < 40
    for i, r in enumerate(results):
        if not isinstance(r, BaseException):
            np.testing.assert_allclose(r, expected[i : i + 1], atol=1e-6)


async def test_killed_worker_is_unavailable_quickly(demo_models: DemoModels, tmp_path: Path) -> None:
    worker = OrtWorker(demo_models.repo, workdir=tmp_path, name="doomed")
    worker.start()
    app = await started_app(demo_models.repo, ort_workers=worker.address, cpu_backend="ort_worker")
    try:
        row = [row_to_proto(frame_rows(demo_models.holdout.head(1))[0])]
        request = inference_pb2.InferRequest(model="fraud_ctx", feature_names=NAMES, rows=row)
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            assert len((await stub.Infer(request, timeout=5)).predictions) == 1
            worker.kill()
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Infer(request, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
            assert time.monotonic() - started < 2.0
    finally:
        await app.stop()
        worker.stop()
