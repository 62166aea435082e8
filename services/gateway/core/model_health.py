"""GetModelHealth: how one model is served, assembled from routing, the orchestrator, the feature
service, the breakers and this gateway's answer statistics.

Ports: `ModelInventory` (the orchestrator: versions of a model, one version's description) and the
predictor's `FeatureSource` (a one-entity read proves the feature store answers). Failures of either
are reported in the answer (status code names, never upstream messages or addresses), not raised,
except an unknown model (NotFound) that neither routing nor the orchestrator knows.

Used from one event loop; one reporter per gateway, owned by the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from predmesh.common.errors import PredmeshError
from services.gateway.core.breaker import BreakerRegistry
from services.gateway.core.model_stats import ModelStats
from services.gateway.core.ports import FeatureSource
from services.gateway.core.routing import RoutingTable
from services.gateway.errors import NotFound

FEATURES_BREAKER = "features"
PROBE_ENTITY = "__predmesh_health_probe__"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: str
    kind: str
    entity_type: str
    features: tuple[str, ...]


class ModelInventory(Protocol):
    async def versions(self, model: str, timeout_s: float) -> tuple[str, ...]:
        """Versions the orchestrator serves for `model` (NotFound when it has none)."""
        ...

    async def describe(self, model: str, version: str, timeout_s: float) -> VersionInfo: ...


@dataclass(frozen=True, slots=True)
class VersionHealth:
    version: str
    weight_percent: float = 0.0
    roles: tuple[str, ...] = ()
    loaded: bool = False
    kind: str = ""
    breaker: str = "closed"
    error: str = ""


@dataclass(frozen=True, slots=True)
class ModelHealth:
    model: str
    healthy: bool
    versions: tuple[VersionHealth, ...]
    feature_store_reachable: bool
    feature_store_error: str
    last_inference_ms: float
    p99_inference_ms: float
    requests_in_window: int
    degraded_ratio: float
    window_s: float
    breakers: dict[str, str] = field(default_factory=dict)
    fallback: tuple[str, ...] = ()


def _code(err: PredmeshError) -> str:
    return err.code.value


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


class ModelHealthReporter:
    def __init__(
        self,
        inventory: ModelInventory,
        features: FeatureSource,
        breakers: BreakerRegistry,
        stats: ModelStats,
        routing: Callable[[], RoutingTable],
    ) -> None:
        self._inventory = inventory
        self._features = features
        self._breakers = breakers
        self._stats = stats
        self._routing = routing

    async def report(self, model: str, timeout_s: float) -> ModelHealth:
        route = self._routing().routes.get(model)
        try:
            listed = await self._inventory.versions(model, timeout_s / 2)
            listing_error = ""
        except NotFound:
            if route is None:
                raise
            listed, listing_error = (), "NOT_FOUND"
        except PredmeshError as err:
            listed, listing_error = (), _code(err)
        roles: dict[str, list[str]] = {}
        weights: dict[str, float] = {}
        if route is not None:
            for i, wv in enumerate(route.versions):
                roles.setdefault(wv.version, []).append("stable" if i == 0 else "canary")
                weights[wv.version] = wv.weight
            for version in route.shadow:
                roles.setdefault(version, []).append("shadow")
        breakers = {k: v for k, v in self._breakers.states().items() if k.startswith(f"model:{model}:")}
        versions: list[VersionHealth] = []
        entity: VersionInfo | None = None
        for version in sorted(set(listed) | set(roles), key=_version_order):
            try:
                info = await self._inventory.describe(model, version, timeout_s / 4)
                entity = entity or info
                loaded, kind, error = True, info.kind, ""
            except PredmeshError as err:
                loaded, kind, error = False, "", listing_error or _code(err)
            versions.append(
                VersionHealth(
                    version=version,
                    weight_percent=weights.get(version, 0.0),
                    roles=tuple(roles.get(version, ())),
                    loaded=loaded,
                    kind=kind,
                    breaker=breakers.get(f"model:{model}:{version}", "closed"),
                    error=error,
                )
            )
        reachable, store_error = await self._probe_features(entity, timeout_s / 4)
        breakers[FEATURES_BREAKER] = self._breakers.states().get(FEATURES_BREAKER, "closed")
        stats = self._stats.summary(model)
        routed_loaded = all(v.loaded for v in versions if v.weight_percent > 0 or not roles)
        healthy = bool(versions) and routed_loaded and reachable and "open" not in breakers.values()
        return ModelHealth(
            model=model,
            healthy=healthy,
            versions=tuple(versions),
            feature_store_reachable=reachable,
            feature_store_error=store_error,
            last_inference_ms=stats.last_inference_ms,
            p99_inference_ms=stats.p99_inference_ms,
            requests_in_window=stats.requests,
            degraded_ratio=stats.degraded_ratio,
            window_s=self._stats.window_s,
            breakers=breakers,
            fallback=tuple(step.label for step in route.fallback) if route is not None else (),
        )

    async def _probe_features(self, info: VersionInfo | None, timeout_s: float) -> tuple[bool, str]:
        """One feature read for the model's entity type (an unknown probe entity: the store is asked)."""
        if info is None:
            return False, "NO_MODEL_VERSION"
        try:
            await self._features.get(info.entity_type, [(PROBE_ENTITY, {})], info.features, timeout_s)
        except PredmeshError as err:
            return False, _code(err)
        return True, ""
