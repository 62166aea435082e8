"""The priority class of the request being served, for the micro-batcher (core/batcher.py).

The servicer sets `REQUEST_PRIORITY` (predmesh.v1.Priority: 0 unspecified, 1 real-time, 2 async,
3 batch) at the start of each Infer call; code that runs in that call's task (the batching
backend's `submit`) reads it, without threading a parameter through every backend interface.
A contextvar: each gRPC call runs in its own task, so values never leak between calls.
"""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_PRIORITY: ContextVar[int] = ContextVar("predmesh_inference_request_priority", default=0)
