"""The request path: validate, fetch features, infer, answer, log.

`Predictor` is created once by the app and shared by all requests on one event loop.
It never blocks: upstream calls are awaited with the request's remaining budget and the
prediction log is handed to a non-blocking sink.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from predmesh.common.deadline import Deadline
from services.gateway.core.catalog import ModelCatalog
from services.gateway.core.hashing import features_hash
from services.gateway.core.ports import FeatureSource, ModelRunner, PredictionSink
from services.gateway.core.types import (
    FeatureRow,
    ModelDescriptor,
    PredictInput,
    PredictionRecord,
    PredictOutput,
    Timings,
)
from services.gateway.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_MAX_ID = 256
_MAX_CONTEXT = 256


@dataclass(frozen=True, slots=True)
class PredictorLimits:
    features_timeout_s: float
    inference_timeout_s: float
    max_batch_items: int


def _check_name(kind: str, value: str, required: bool = True) -> None:
    if not value:
        if required:
            raise InvalidArgument(f"{kind} is required")
        return
    if not _NAME.match(value):
        raise InvalidArgument(f"{kind} {value[:64]!r} is not a valid name")


def _check_input(item: PredictInput) -> None:
    _check_name("model", item.model)
    _check_name("version", item.version, required=False)
    if not item.entity_id:
        raise InvalidArgument("entity_id is required")
    if len(item.entity_id) > _MAX_ID:
        raise InvalidArgument(f"entity_id longer than {_MAX_ID} characters")
    if len(item.request_id) > _MAX_ID:
        raise InvalidArgument(f"request_id longer than {_MAX_ID} characters")
    if len(item.context) > _MAX_CONTEXT:
        raise InvalidArgument(f"more than {_MAX_CONTEXT} context features")


class Predictor:
    def __init__(
        self,
        features: FeatureSource,
        models: ModelRunner,
        catalog: ModelCatalog,
        sink: PredictionSink | None,
        limits: PredictorLimits,
    ) -> None:
        self._features = features
        self._models = models
        self._catalog = catalog
        self._sink = sink
        self._limits = limits

    async def predict(self, item: PredictInput, deadline: Deadline) -> PredictOutput:
        _check_input(item)
        return (await self._run(item.request_id, item.model, item.version, [item], deadline))[0]

    async def predict_batch(
        self, request_id: str, model: str, version: str, items: Sequence[PredictInput], deadline: Deadline
    ) -> list[PredictOutput]:
        if not items:
            raise InvalidArgument("items must not be empty")
        if len(items) > self._limits.max_batch_items:
            raise InvalidArgument(f"at most {self._limits.max_batch_items} items per batch, got {len(items)}")
        for item in items:
            _check_input(item)
        return await self._run(request_id, model, version, items, deadline)

    async def _run(
        self, request_id: str, model: str, version: str, items: Sequence[PredictInput], deadline: Deadline
    ) -> list[PredictOutput]:
        started = time.monotonic()
        request_id = request_id or uuid.uuid4().hex
        desc = await self._catalog.describe(model, version, deadline.budget(what="model lookup"))

        t0 = time.monotonic()
        rows = await self._features.get(
            desc.entity_type,
            [(it.entity_id, it.context) for it in items],
            desc.features,
            deadline.budget(self._limits.features_timeout_s, "feature fetch"),
        )
        t1 = time.monotonic()
        if len(rows) != len(items):
            raise Unavailable(f"features service returned {len(rows)} rows for {len(items)} entities")
        result = await self._models.infer(
            model,
            version or desc.version,
            desc.features,
            [row.values for row in rows],
            request_id,
            deadline.budget(self._limits.inference_timeout_s, "inference"),
        )
        t2 = time.monotonic()
        if len(result.scores) != len(items):
            raise Unavailable(f"orchestrator returned {len(result.scores)} predictions for {len(items)} rows")

        timings = Timings(
            features_ms=(t1 - t0) * 1e3, inference_ms=(t2 - t1) * 1e3, total_ms=(t2 - started) * 1e3
        )
        arm = "pinned" if version else "stable"
        outputs: list[PredictOutput] = []
        for idx, (item, row, score) in enumerate(zip(items, rows, result.scores, strict=True)):
            rid = request_id if len(items) == 1 else f"{request_id}/{idx}"
            out = PredictOutput(
                request_id=rid,
                model=model,
                model_version=result.version,
                entity_id=item.entity_id,
                score=score,
                arm=arm,
                timings=timings,
                defaulted_features=row.defaulted,
            )
            outputs.append(out)
            self._log(out, desc, row)
        return outputs

    def _log(self, out: PredictOutput, desc: ModelDescriptor, row: FeatureRow) -> None:
        if self._sink is None:
            return
        record = PredictionRecord(
            request_id=out.request_id,
            model=out.model,
            model_version=out.model_version,
            arm=out.arm,
            entity_id=out.entity_id,
            features_hash=features_hash(desc.features, row.values),
            score=out.score,
            latency_ms=out.timings.total_ms,
            degraded=out.degraded,
            degraded_reason=out.degraded_reason,
            timestamp_s=time.time(),
            defaulted_features=out.defaulted_features,
        )
        if not self._sink.emit(record):
            log.warning("prediction log buffer full: record for %s dropped", out.request_id)
