"""The execution backend interface every model runtime implements.

A backend turns a float32 matrix into raw model output for one loaded model version.
It knows nothing about features, specs' transforms or predictions: preprocessing and
postprocessing happen in the core around it, so an in-process ONNX Runtime session, a
Triton server, a remote KServe-v2 worker or a micro-batcher wrapping any of them are
interchangeable.

Ownership: the backend owns whatever it creates for a model version (sessions,
channels, worker threads) from `load` until `unload`, and everything else until
`close`. The caller owns the `batch` array it passes in and must not mutate it until
`infer` returns; the backend owns (and hands over) the array it returns.

Threading: every method is a coroutine called on one event loop. Implementations must
never block that loop: blocking work (a session run, a file read) goes to a thread
pool the backend owns, or to non-blocking I/O. `infer` may be called concurrently, for
the same or different model versions.

Lifecycle: construct -> `load(mv)` for each version to serve -> `infer(mv, batch)` any
number of times while `ready(mv)` -> `unload(mv)` -> `close()` once at shutdown
(after which no method may be called). `load` of a loaded version and `unload` of an
unloaded one are no-ops. `infer` on a version that is not loaded raises ModelNotReady.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from predmesh.common.deadline import Deadline
from predmesh.models.registry import ModelVersion


@runtime_checkable
class Backend(Protocol):
    """Async execution backend; see the module docstring for ownership/threading/lifecycle."""

    name: str

    async def load(self, model_version: ModelVersion) -> None:
        """Make `model_version` runnable. Raises ModelLoadError (missing/corrupt model,
        tensor names or input width that contradict the spec)."""
        ...

    async def infer(
        self, model_version: ModelVersion, batch: np.ndarray, deadline: Deadline | None = None
    ) -> np.ndarray:
        """Run one batch: `batch` is float32 [N, D] (D = spec.input_width) in spec input
        order; returns the raw `spec.onnx.output` tensor (e.g. class probabilities
        [N, K]). `deadline` (optional) is the caller's: remote backends use it as the
        call's timeout, batchers drop requests whose deadline passed before execution.
        Raises ModelNotReady when not loaded, ModelExecutionError when the run fails,
        Unavailable when a remote backend cannot be reached, DeadlineExceeded."""
        ...

    async def unload(self, model_version: ModelVersion) -> None:
        """Release what `load` created; in-flight `infer` calls may finish first."""
        ...

    async def ready(self, model_version: ModelVersion) -> bool:
        """Whether `infer` can be called for `model_version` now."""
        ...

    async def close(self) -> None:
        """Unload everything and release shared resources (thread pools, channels)."""
        ...
