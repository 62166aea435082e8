"""GetModelHealth transport: the orchestrator as a `ModelInventory`, and the answer as protobuf."""

from __future__ import annotations

import grpc

from predmesh.common.grpcclient import upstream_error
from predmesh.v1 import health_pb2, inference_pb2, inference_pb2_grpc
from services.gateway.core.model_health import ModelHealth, VersionInfo


class OrchestratorInventory:
    """ModelInventory over the orchestrator's GetModel (one long-lived channel, owned by the app)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = inference_pb2_grpc.InferenceServiceStub(channel)

    async def _get(self, model: str, version: str, timeout_s: float) -> inference_pb2.ModelInfo:
        try:
            return await self._stub.GetModel(
                inference_pb2.GetModelRequest(model=model, version=version), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as err:
            raise upstream_error(err, "inference") from err

    async def versions(self, model: str, timeout_s: float) -> tuple[str, ...]:
        return tuple((await self._get(model, "", timeout_s)).versions)

    async def describe(self, model: str, version: str, timeout_s: float) -> VersionInfo:
        info = await self._get(model, version, timeout_s)
        return VersionInfo(info.version, info.kind, info.entity_type, tuple(info.features))


def model_health_to_pb(h: ModelHealth) -> health_pb2.ModelHealthResponse:
    return health_pb2.ModelHealthResponse(
        model=h.model,
        healthy=h.healthy,
        versions=[
            health_pb2.ModelVersionHealth(
                version=v.version,
                weight_percent=v.weight_percent,
                roles=list(v.roles),
                loaded=v.loaded,
                kind=v.kind,
                breaker=v.breaker,
                error=v.error,
            )
            for v in h.versions
        ],
        feature_store_reachable=h.feature_store_reachable,
        feature_store_error=h.feature_store_error,
        last_inference_ms=h.last_inference_ms,
        p99_inference_ms=h.p99_inference_ms,
        requests_in_window=h.requests_in_window,
        degraded_ratio=h.degraded_ratio,
        window_s=h.window_s,
        breakers=[health_pb2.BreakerState(dependency=k, state=s) for k, s in sorted(h.breakers.items())],
        fallback=list(h.fallback),
    )
