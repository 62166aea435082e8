"""In-process ONNX Runtime backend: one `InferenceSession` per loaded model version.

Ownership: the backend owns its sessions and one ThreadPoolExecutor of
`executor_threads` workers. Sessions are created (file read + graph optimisation) and
run on that pool, never on the event loop. `InferenceSession.run` is thread-safe, so
concurrent `infer` calls on the same session run in parallel up to the pool size; ORT's
own intra-op threads multiply that, hence small defaults on shared CPUs.

Lifecycle: see `predmesh.models.backend`. `close()` drops every session and
shuts the pool down, waiting for running batches.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

from predmesh.common.deadline import Deadline
from predmesh.models.errors import ModelExecutionError, ModelLoadError, ModelNotReady
from predmesh.models.registry import ModelVersion, VersionKey

log = logging.getLogger(__name__)


class OnnxRuntimeLocalBackend:
    """Backend running ONNX models in this process on CPU (see module docstring)."""

    name = "onnxruntime_local"

    def __init__(
        self,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        executor_threads: int = 2,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ) -> None:
        self._intra = intra_op_threads
        self._inter = inter_op_threads
        self._providers = list(providers)
        self._pool = ThreadPoolExecutor(max_workers=executor_threads, thread_name_prefix="ort")
        self._sessions: dict[VersionKey, ort.InferenceSession] = {}
        self._closed = False

    def _options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._intra
        options.inter_op_num_threads = self._inter
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return options

    def _create(self, model_version: ModelVersion) -> ort.InferenceSession:
        """Blocking: read, check and optimise the model. Runs on the pool."""
        spec = model_version.spec
        try:
            session = ort.InferenceSession(
                str(model_version.onnx_path), sess_options=self._options(), providers=self._providers
            )
        except Exception as err:  # ORT raises its own Fail/InvalidGraph/... types
            raise ModelLoadError(f"model {model_version}: cannot load {model_version.onnx_path.name}: {err}") from err
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        if spec.onnx.input not in inputs:
            raise ModelLoadError(
                f"model {model_version}: ONNX input {spec.onnx.input!r} not found (has {sorted(inputs)})"
            )
        if len(inputs) != 1:
            raise ModelLoadError(f"model {model_version}: expected one ONNX input, found {sorted(inputs)}")
        if spec.onnx.output not in outputs:
            raise ModelLoadError(
                f"model {model_version}: ONNX output {spec.onnx.output!r} not found (has {sorted(outputs)})"
            )
        tensor = inputs[spec.onnx.input]
        if tensor.type != "tensor(float)":
            raise ModelLoadError(f"model {model_version}: input {tensor.name!r} is {tensor.type}, expected float32")
        shape = tensor.shape
        if len(shape) != 2:
            raise ModelLoadError(f"model {model_version}: input {tensor.name!r} has rank {len(shape)}, expected 2")
        if isinstance(shape[1], int) and shape[1] != spec.input_width:
            raise ModelLoadError(
                f"model {model_version}: input {tensor.name!r} has width {shape[1]}, "
                f"the spec's inputs make {spec.input_width} columns"
            )
        return session

    async def load(self, model_version: ModelVersion) -> None:
        self._check_open()
        if model_version.key in self._sessions:
            return
        loop = asyncio.get_running_loop()
        session = await loop.run_in_executor(self._pool, self._create, model_version)
        self._sessions[model_version.key] = session
        log.info("loaded %s on %s", model_version, self.name)

    async def infer(
        self, model_version: ModelVersion, batch: np.ndarray, deadline: Deadline | None = None
    ) -> np.ndarray:
        # In-process runs are not interruptible: `deadline` is only checked before running.
        if deadline is not None:
            deadline.budget(what=f"running {model_version}")
        session = self._sessions.get(model_version.key)
        if session is None:
            raise ModelNotReady(f"model {model_version} is not loaded")
        spec = model_version.spec
        feed = {spec.onnx.input: np.ascontiguousarray(batch, dtype=np.float32)}
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._pool, session.run, [spec.onnx.output], feed)
        except Exception as err:
            log.error("model %s failed to run on a batch of %s", model_version, batch.shape, exc_info=err)
            raise ModelExecutionError(f"model {model_version} failed to run") from err
        result: np.ndarray = outputs[0]
        return result

    async def unload(self, model_version: ModelVersion) -> None:
        # Dropping our reference is enough: a run in flight holds its own reference to
        # the session and finishes normally.
        if self._sessions.pop(model_version.key, None) is not None:
            log.info("unloaded %s", model_version)

    async def ready(self, model_version: ModelVersion) -> bool:
        return model_version.key in self._sessions

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sessions.clear()
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.name} backend is closed")
