"""A small TTL cache of model descriptions in front of the orchestrator."""

from __future__ import annotations

import time

from services.gateway.core.ports import ModelRunner
from services.gateway.core.types import ModelDescriptor


class ModelCatalog:
    """Caches `ModelRunner.describe` results for `ttl_s` seconds; failures are not cached.

    Used from one event loop; concurrent misses for the same key may both call upstream.
    """

    def __init__(self, runner: ModelRunner, ttl_s: float) -> None:
        self._runner = runner
        self._ttl_s = ttl_s
        self._entries: dict[tuple[str, str], tuple[float, ModelDescriptor]] = {}

    async def describe(self, model: str, version: str, timeout_s: float) -> ModelDescriptor:
        key = (model, version)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        desc = await self._runner.describe(model, version, timeout_s)
        self._entries[key] = (now + self._ttl_s, desc)
        return desc
