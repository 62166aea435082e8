"""InferenceCore's public surface: readiness is the gRPC health service's job, not the core's."""

from __future__ import annotations

from services.inference.core.service import InferenceCore


def test_core_has_no_dead_readiness_method() -> None:
    """`InferenceCore.ready` was never called (health comes from GrpcServer, model readiness
    from the lifecycle's warm-up); dead code goes rather than drifting out of date."""
    assert not hasattr(InferenceCore, "ready")
    assert {"infer", "registry"} <= set(dir(InferenceCore))
