"""Errors of the inference orchestrator, all `PredmeshError` subclasses.

The shared `ErrorInterceptor` maps them to gRPC status codes; core code never
imports grpc.
"""

from __future__ import annotations

from predmesh.common.errors import FailedPrecondition, NotFound, PredmeshError, Unavailable


class ModelSpecError(FailedPrecondition):
    """A `model.yaml` (or the repository layout around it) is invalid. Raised at load time."""


class ModelLoadError(FailedPrecondition):
    """A backend could not load a model version (missing/corrupt ONNX, tensor mismatch)."""


class ModelNotFound(NotFound):
    """No model with that name is registered."""


class VersionNotFound(NotFound):
    """The model exists but not that version."""


class ModelNotReady(Unavailable):
    """The model version is registered but its backend has not loaded it (or unloaded it)."""


class ModelExecutionError(PredmeshError):
    """The model failed to run or produced output that contradicts its spec (INTERNAL).

    The message names the model version but never the backend's internal details,
    which are logged instead.
    """
