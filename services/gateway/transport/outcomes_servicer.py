"""OutcomeService servicer: protobuf in, `OutcomeRecorder` call, protobuf out."""

from __future__ import annotations

import grpc

from predmesh.v1 import outcomes_pb2, outcomes_pb2_grpc
from services.gateway.core.auth import ApiKeyAuthorizer
from services.gateway.core.outcomes import OutcomeRecord, OutcomeRecorder
from services.gateway.transport.servicer import api_key


def outcome_record(request: outcomes_pb2.RecordOutcomeRequest) -> OutcomeRecord:
    event_time_s = request.event_time.ToNanoseconds() / 1e9 if request.HasField("event_time") else 0.0
    return OutcomeRecord(
        request_id=request.request_id,
        model=request.model,
        label=request.label,
        value=request.value if request.HasField("value") else None,
        event_time_s=event_time_s,
    )


class OutcomeServicer(outcomes_pb2_grpc.OutcomeServiceServicer):
    def __init__(self, recorder: OutcomeRecorder, authorizer: ApiKeyAuthorizer) -> None:
        self._recorder = recorder
        self._auth = authorizer

    async def RecordOutcome(
        self, request: outcomes_pb2.RecordOutcomeRequest, context: grpc.aio.ServicerContext
    ) -> outcomes_pb2.RecordOutcomeResponse:
        self._auth.check(api_key(context), request.model)
        recorded = self._recorder.record(outcome_record(request))
        return outcomes_pb2.RecordOutcomeResponse(request_id=recorded.request_id)
