"""RecordOutcome through a real gateway server: authenticated like Predict, validated, queued for the log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from predmesh.local.procs import free_port
from predmesh.v1 import events_pb2, outcomes_pb2, outcomes_pb2_grpc
from services.gateway.app import GatewayApp
from services.gateway.core.outcomes import OutcomeRecord
from services.gateway.settings import GatewaySettings
from services.gateway.transport.logsink import outcome_to_event


class RecordingSink:
    def __init__(self) -> None:
        self.outcomes: list[OutcomeRecord] = []
        self.full = False

    def emit(self, record: object) -> bool:
        return True

    def emit_many(self, records: object) -> int:
        return 0

    def emit_outcome(self, outcome: OutcomeRecord) -> bool:
        if self.full:
            return False
        self.outcomes.append(outcome)
        return True


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[GatewayApp, RecordingSink, outcomes_pb2_grpc.OutcomeServiceStub]]:
    sink = RecordingSink()
    settings = GatewaySettings(
        port=0,
        grace_s=0.1,
        api_keys={"k-fraud": ["fraud"]},
        features_target=f"127.0.0.1:{free_port()}",
        inference_target=f"127.0.0.1:{free_port()}",
    )
    app = GatewayApp(settings, sink=sink)  # type: ignore[arg-type]
    await app.start()
    try:
        assert app.server is not None
        async with grpc.aio.insecure_channel(app.server.address) as channel:
            yield app, sink, outcomes_pb2_grpc.OutcomeServiceStub(channel)
    finally:
        await app.stop()


KEY = (("x-api-key", "k-fraud"),)


async def test_outcome_is_queued_with_its_times(gateway) -> None:  # type: ignore[no-untyped-def]
    _, sink, stub = gateway
    reply = await stub.RecordOutcome(
        outcomes_pb2.RecordOutcomeRequest(request_id="r1", model="fraud", label="fraud", value=1.0), metadata=KEY
    )
    assert reply.request_id == "r1"
    [outcome] = sink.outcomes
    assert (outcome.request_id, outcome.model, outcome.label, outcome.value) == ("r1", "fraud", "fraud", 1.0)
    assert outcome.received_s > 0 and outcome.event_time_s == outcome.received_s
    event = outcome_to_event(outcome)
    assert event.arm == "outcome" and event.outcome.value == 1.0 and event.outcome.label == "fraud"
    assert events_pb2.PredictionEvent.FromString(event.SerializeToString()).outcome.HasField("value")


@pytest.mark.parametrize(
    ("request_", "metadata", "code"),
    [
        (
            outcomes_pb2.RecordOutcomeRequest(request_id="r", model="fraud", value=1),
            (),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        (
            outcomes_pb2.RecordOutcomeRequest(request_id="r", model="other", value=1),
            KEY,
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            outcomes_pb2.RecordOutcomeRequest(request_id="", model="fraud", value=1),
            KEY,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (outcomes_pb2.RecordOutcomeRequest(request_id="r", model="fraud"), KEY, grpc.StatusCode.INVALID_ARGUMENT),
        (
            outcomes_pb2.RecordOutcomeRequest(request_id="r", model="fraud", value=float("nan")),
            KEY,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
async def test_bad_outcomes_get_precise_statuses(gateway, request_, metadata, code) -> None:  # type: ignore[no-untyped-def]
    _, sink, stub = gateway
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RecordOutcome(request_, metadata=metadata)
    assert err.value.code() == code
    assert sink.outcomes == []


async def test_full_log_buffer_is_resource_exhausted(gateway) -> None:  # type: ignore[no-untyped-def]
    _, sink, stub = gateway
    sink.full = True
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RecordOutcome(
            outcomes_pb2.RecordOutcomeRequest(request_id="r", model="fraud", label="legit"), metadata=KEY
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
