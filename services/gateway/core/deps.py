"""What the parts of the request path share: one set per `Predictor`, built by it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from services.gateway.core.breaker import BreakerRegistry
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.limits import PredictorLimits
from services.gateway.core.outputs import PredictionLog
from services.gateway.core.ports import FeatureSource, ModelRunner
from services.gateway.metrics import GatewayMetrics


@dataclass(frozen=True, slots=True)
class PathDeps:
    """Upstream ports, model catalog, breakers, limits, metrics, prediction log and the clock
    of timings (`time.monotonic`; tests pass a fake). Owned by the app, like the ports."""

    features: FeatureSource
    models: ModelRunner
    catalog: ModelCatalog
    breakers: BreakerRegistry
    limits: PredictorLimits
    metrics: GatewayMetrics
    log: PredictionLog
    clock: Callable[[], float] = time.monotonic
