"""PredictionService servicer: protobuf in, core call, protobuf out. Nothing else."""

from __future__ import annotations

import grpc

from predmesh.common.deadline import Deadline
from predmesh.common.errors import FailedPrecondition
from predmesh.v1 import health_pb2, jobs_pb2, prediction_pb2, prediction_pb2_grpc
from services.gateway.core.async_jobs import AsyncDispatcher
from services.gateway.core.async_ports import State
from services.gateway.core.auth import ApiKeyAuthorizer
from services.gateway.core.durable_async import DurableAsync
from services.gateway.core.model_health import ModelHealthReporter
from services.gateway.core.model_stats import ModelStats
from services.gateway.core.predictor import Predictor
from services.gateway.core.priority import LaneAdmission, Priority, resolve
from services.gateway.core.types import Arm
from services.gateway.errors import InvalidArgument
from services.gateway.transport import converters
from services.gateway.transport.health import model_health_to_pb

_STATES = {
    State.PENDING: jobs_pb2.PREDICTION_STATE_PENDING,
    State.DONE: jobs_pb2.PREDICTION_STATE_DONE,
    State.FAILED: jobs_pb2.PREDICTION_STATE_FAILED,
}


def api_key(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "x-api-key":
            return str(value)
        if key == "authorization" and str(value).lower().startswith("bearer "):
            return str(value)[7:].strip()
    return None


DEGRADED_HEADER = "x-prediction-degraded"
DEGRADED_REASON_HEADER = "x-prediction-degraded-reason"
_MAX_REASON_CHARS = 256


def degraded_metadata(reasons: list[str]) -> tuple[tuple[str, str], ...]:
    """Initial metadata for an answer with these degraded reasons (empty list = not degraded: no metadata).

    `x-prediction-degraded: true` and `x-prediction-degraded-reason` (distinct reasons joined by "; ",
    printable ASCII only, bounded); the edge's JSON transcoder passes both on as HTTP response headers."""
    if not reasons:
        return ()
    joined = "; ".join(dict.fromkeys(r or "unspecified" for r in reasons))
    reason = "".join(c if " " <= c <= "~" else "?" for c in joined)[:_MAX_REASON_CHARS]
    return ((DEGRADED_HEADER, "true"), (DEGRADED_REASON_HEADER, reason))


async def _send_degraded(context: grpc.aio.ServicerContext, reasons: list[str]) -> None:
    metadata = degraded_metadata(reasons)
    if metadata:
        await context.send_initial_metadata(metadata)


class PredictionServicer(prediction_pb2_grpc.PredictionServiceServicer):
    """`dispatcher` serves PredictAsync in memory; with `durable` set, PredictAsync goes through the
    durable queue instead and GetPrediction answers. `admission` = priority-lane admission."""

    def __init__(
        self,
        predictor: Predictor,
        dispatcher: AsyncDispatcher,
        authorizer: ApiKeyAuthorizer,
        default_deadline_s: float,
        max_batch_items: int | None = None,
        durable: DurableAsync | None = None,
        admission: LaneAdmission | None = None,
        stats: ModelStats | None = None,
        health: ModelHealthReporter | None = None,
    ) -> None:
        self._predictor = predictor
        self._dispatcher = dispatcher
        self._auth = authorizer
        self._default_deadline_s = default_deadline_s
        self._max_batch_items = max_batch_items
        self._durable = durable
        self._admission = admission or LaneAdmission(0)
        self._stats = stats or ModelStats()
        self._health = health

    def _deadline(self, context: grpc.aio.ServicerContext) -> Deadline:
        remaining = context.time_remaining()
        return Deadline.after(self._default_deadline_s if remaining is None else remaining)

    async def Predict(
        self, request: prediction_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> prediction_pb2.PredictResponse:
        # Without keys and with anonymous access the grant never depends on the key: skip reading metadata.
        grant = self._auth.check(api_key(context) if self._auth.enabled else None, request.model)
        priority = resolve(request.priority, grant.priority)
        with self._admission.admit(priority) as slot:
            out = await self._predictor.predict(converters.predict_input(request, priority), self._deadline(context))
            slot.fell_back(out.arm is Arm.FALLBACK)  # for the background pace: a fallback answer is a miss
        self._stats.record(request.model, out.timings.inference_ms, out.degraded)
        if out.degraded:
            await _send_degraded(context, [out.degraded_reason])
        return converters.predict_response(out)

    async def PredictBatch(
        self, request: prediction_pb2.PredictBatchRequest, context: grpc.aio.ServicerContext
    ) -> prediction_pb2.PredictBatchResponse:
        grant = self._auth.check(api_key(context), request.model)
        priority = resolve(request.priority, grant.priority)
        with self._admission.admit(priority) as slot:
            outs = await self._predictor.predict_batch(
                request.request_id,
                request.model,
                request.version,
                converters.batch_inputs(request, self._max_batch_items, priority),  # counted before any conversion
                self._deadline(context),
            )
            slot.fell_back(any(o.arm is Arm.FALLBACK for o in outs))
        for o in outs:
            self._stats.record(request.model, o.timings.inference_ms, o.degraded)
        await _send_degraded(context, [o.degraded_reason for o in outs if o.degraded])
        return converters.batch_response(request.request_id, outs)

    async def PredictAsync(
        self, request: prediction_pb2.PredictAsyncRequest, context: grpc.aio.ServicerContext
    ) -> prediction_pb2.PredictAsyncResponse:
        if not request.HasField("request"):
            raise InvalidArgument("request is required")
        grant = self._auth.check(api_key(context), request.request.model)
        priority = resolve(request.request.priority, grant.priority, floor=Priority.ASYNC)
        item = converters.predict_input(request.request, priority)
        with self._admission.admit(priority):
            if self._durable is not None:
                request_id = await self._durable.submit(
                    item, request.callback_target, grant.callback_hosts, grant.name, priority
                )
            else:
                request_id = await self._dispatcher.submit(item, request.callback_target, grant.callback_hosts)
        return prediction_pb2.PredictAsyncResponse(request_id=request_id)

    async def GetPrediction(
        self, request: jobs_pb2.GetPredictionRequest, context: grpc.aio.ServicerContext
    ) -> prediction_pb2.GetPredictionResponse:
        grant = self._auth.identify(api_key(context))
        if self._durable is None:
            raise FailedPrecondition("polling needs the durable async queue (gateway async_kafka_bootstrap)")
        found = await self._durable.get(request.request_id, grant.name)
        response = prediction_pb2.GetPredictionResponse(request_id=request.request_id, state=_STATES[found.state])
        if found.result is not None:
            if found.result.output is not None:
                response.response.CopyFrom(converters.predict_response(found.result.output))
            response.error_code = found.result.error_code
            response.error_message = found.result.error_message
        return response

    async def GetModelHealth(
        self, request: health_pb2.GetModelHealthRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.ModelHealthResponse:
        self._auth.check(api_key(context), request.model)
        if not request.model:
            raise InvalidArgument("model is required")
        if self._health is None:
            raise FailedPrecondition("model health is not enabled on this gateway")
        return model_health_to_pb(await self._health.report(request.model, self._deadline(context).remaining()))
