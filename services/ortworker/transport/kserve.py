"""KServe v2 `GRPCInferenceService` servicer on top of a model registry and a backend.

Implements ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata,
ModelConfig, ModelInfer and ModelStatistics, and with explicit model control
(core/control.py) RepositoryIndex, RepositoryModelLoad (a `config` parameter may carry
a JSON override whose `version_policy.specific.versions` names the versions to load)
and RepositoryModelUnload; without it load/unload answer FAILED_PRECONDITION (the
worker manages its versions itself). RepositoryIndex always answers (READY = loaded now;
`reason` carries `size_bytes=`). The other RPCs answer UNIMPLEMENTED.
ModelInfer takes one FP32 input tensor named like the spec's `onnx.input`, shaped
[N, D], either in `raw_input_contents` or in typed `contents.fp32_contents`, and answers
the spec's `onnx.output` tensor in `raw_output_contents` (what Triton does).

Bad requests raise InvalidArgument (wrong tensor name/type/shape/size, unknown
output); an unknown model/version raises NotFound; the shared ErrorInterceptor maps
them to gRPC statuses. Threading: one event loop; the backend runs sessions on its own
thread pool. The servicer borrows the registry and backend; it owns its statistics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import np_to_triton_dtype

from predmesh.common.deadline import Deadline
from predmesh.common.errors import FailedPrecondition, InvalidArgument, PredmeshError
from predmesh.models.backend import Backend
from predmesh.models.lifecycle import ModelLifecycle
from predmesh.models.pool import PooledBackend
from predmesh.models.registry import ModelVersion
from services.ortworker.core.control import ExplicitControl, index, versions_from_config

SERVER_NAME = "predmesh-ort-worker"
PLATFORM = "onnxruntime_onnx"


@dataclass
class _Stats:
    """Per model version counters, Triton's ModelStatistics semantics."""

    inference_count: int = 0  # rows
    execution_count: int = 0  # model executions (one per ModelInfer here)
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    last_inference_ms: int = 0


def _duration(count: int, ns: int) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=count, ns=ns)


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    """KServe v2 servicer for the versions `lifecycle` serves, run on `backend` (both borrowed).

    Each call resolves its version on the lifecycle's current snapshot (hot reload:
    new versions appear once loaded and warmed up; removed ones drain)."""

    def __init__(
        self,
        lifecycle: ModelLifecycle,
        backend: Backend,
        max_rows: int = 8192,
        control: ExplicitControl | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._backend = backend
        self._control = control
        self._max_rows = max_rows
        self._stats: dict[tuple[str, str], _Stats] = {}
        self.serving = False  # set by the app once every model is loaded

    def _get(self, name: str, version: str) -> ModelVersion:
        return self._lifecycle.resolve(name, version)[0]

    # -- health --------------------------------------------------------------
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.serving)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version="1", extensions=["statistics", "model_configuration"]
        )

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        mv = self._get(request.name, request.version)
        if isinstance(self._backend, PooledBackend):  # a worker-local pool loads registered versions on demand
            return pb.ModelReadyResponse(ready=self.serving and self._backend.state(mv) is not None)
        return pb.ModelReadyResponse(ready=self.serving and await self._backend.ready(mv))

    # -- metadata ------------------------------------------------------------
    @staticmethod
    def _output_width(mv: ModelVersion) -> int:
        spec = mv.spec
        return len(spec.class_labels) if spec.task == "classifier" else -1

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        mv = self._get(request.name, request.version)
        spec = mv.spec
        return pb.ModelMetadataResponse(
            name=spec.name,
            versions=self._lifecycle.snapshot.registry.versions(spec.name),
            platform=PLATFORM,
            inputs=[
                pb.ModelMetadataResponse.TensorMetadata(
                    name=spec.onnx.input, datatype="FP32", shape=[-1, spec.input_width]
                )
            ],
            outputs=[
                pb.ModelMetadataResponse.TensorMetadata(
                    name=spec.onnx.output, datatype="FP32", shape=[-1, self._output_width(mv)]
                )
            ],
        )

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        mv = self._get(request.name, request.version)
        spec = mv.spec
        config = mc.ModelConfig(
            name=spec.name,
            platform=PLATFORM,
            max_batch_size=0,  # the worker does not batch; the orchestrator's batcher does
            input=[mc.ModelInput(name=spec.onnx.input, data_type=mc.TYPE_FP32, dims=[-1, spec.input_width])],
            output=[mc.ModelOutput(name=spec.onnx.output, data_type=mc.TYPE_FP32, dims=[-1, self._output_width(mv)])],
        )
        return pb.ModelConfigResponse(config=config)

    # -- inference -----------------------------------------------------------
    def _input(self, mv: ModelVersion, request: pb.ModelInferRequest) -> np.ndarray:
        spec = mv.spec
        if len(request.inputs) != 1:
            raise InvalidArgument(f"model {mv} takes exactly 1 input tensor, got {len(request.inputs)}")
        tensor = request.inputs[0]
        if tensor.name != spec.onnx.input:
            raise InvalidArgument(f"model {mv}: unexpected input {tensor.name!r}, expected {spec.onnx.input!r}")
        if tensor.datatype != "FP32":
            raise InvalidArgument(f"model {mv}: input {tensor.name!r} must be FP32, got {tensor.datatype}")
        shape = list(tensor.shape)
        if len(shape) != 2 or shape[1] != spec.input_width or shape[0] < 1:
            raise InvalidArgument(f"model {mv}: input {tensor.name!r} must be [N>=1, {spec.input_width}], got {shape}")
        if shape[0] > self._max_rows:
            raise InvalidArgument(f"model {mv}: {shape[0]} rows exceed the limit of {self._max_rows}")
        expected = shape[0] * shape[1]
        if request.raw_input_contents:
            if len(request.raw_input_contents) != 1:
                raise InvalidArgument(f"model {mv}: expected 1 raw input, got {len(request.raw_input_contents)}")
            raw = request.raw_input_contents[0]
            if len(raw) != expected * 4:
                raise InvalidArgument(
                    f"model {mv}: input {tensor.name!r} has {len(raw)} bytes, shape {shape} needs {expected * 4}"
                )
            values = np.frombuffer(raw, dtype="<f4")
        else:
            typed = tensor.contents.fp32_contents
            if len(typed) != expected:
                raise InvalidArgument(
                    f"model {mv}: input {tensor.name!r} has {len(typed)} values, shape {shape} needs {expected}"
                )
            values = np.asarray(typed, dtype=np.float32)
        return values.reshape(shape)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        mv = self._get(request.model_name, request.model_version)
        spec = mv.spec
        for wanted in request.outputs:
            if wanted.name != spec.onnx.output:
                raise InvalidArgument(f"model {mv}: unknown output {wanted.name!r} (has {spec.onnx.output!r})")
        batch = self._input(mv, request)
        stats = self._stats.setdefault(mv.ref, _Stats())
        started = time.perf_counter_ns()
        try:
            remaining = context.time_remaining()
            deadline = Deadline.after(remaining) if remaining is not None else None
            output = await self._backend.infer(mv, batch, deadline)
        except PredmeshError:
            stats.fail_count += 1
            stats.fail_ns += time.perf_counter_ns() - started
            raise
        elapsed = time.perf_counter_ns() - started
        stats.inference_count += len(batch)
        stats.execution_count += 1
        stats.success_count += 1
        stats.success_ns += elapsed
        stats.last_inference_ms = time.time_ns() // 1_000_000
        output = np.ascontiguousarray(output)
        return pb.ModelInferResponse(
            model_name=spec.name,
            model_version=spec.version,
            id=request.id,
            outputs=[
                pb.ModelInferResponse.InferOutputTensor(
                    name=spec.onnx.output, datatype=np_to_triton_dtype(output.dtype), shape=list(output.shape)
                )
            ],
            raw_output_contents=[output.astype(output.dtype.newbyteorder("<"), copy=False).tobytes()],
        )

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        if request.name:
            versions = [self._get(request.name, request.version)]
        else:
            versions = self._lifecycle.snapshot.registry.all()
        reply = pb.ModelStatisticsResponse()
        for mv in versions:
            s = self._stats.get(mv.ref) or _Stats()
            reply.model_stats.append(
                pb.ModelStatistics(
                    name=mv.name,
                    version=mv.version,
                    last_inference=s.last_inference_ms,
                    inference_count=s.inference_count,
                    execution_count=s.execution_count,
                    inference_stats=pb.InferStatistics(
                        success=_duration(s.success_count, s.success_ns),
                        fail=_duration(s.fail_count, s.fail_ns),
                        compute_infer=_duration(s.success_count, s.success_ns),
                    ),
                )
            )
        return reply

    # -- repository (explicit model control) -----------------------------------------
    def _controlled(self) -> ExplicitControl:
        if self._control is None:
            raise FailedPrecondition("this worker does not run explicit model control: every version is loaded")
        return self._control

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        reply = pb.RepositoryIndexResponse()
        items = await (self._control.index() if self._control is not None else index(self._lifecycle, self._backend))
        for item in items:
            if request.ready and not item.ready:
                continue
            reply.models.append(
                pb.RepositoryIndexResponse.ModelIndex(
                    name=item.name,
                    version=item.version,
                    state="READY" if item.ready else "UNAVAILABLE",
                    reason=f"size_bytes={item.size_bytes}",
                )
            )
        return reply

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        control = self._controlled()
        config = request.parameters["config"].string_param if "config" in request.parameters else ""
        await control.load_model(request.model_name, versions_from_config(config))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        await self._controlled().unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()
