"""predmesh.client against a real grpc.aio server on a free port: retries on UNAVAILABLE only, deadlines,
the API key and one request id on every attempt, typed errors."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest

from predmesh.client import (
    AsyncClient,
    BatchItem,
    Client,
    DeadlineExceededError,
    InvalidRequestError,
    RetryPolicy,
    UnavailableError,
)
from predmesh.client.errors import (
    AuthenticationError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    error_for,
)
from predmesh.v1 import common_pb2, jobs_pb2, prediction_pb2, prediction_pb2_grpc

FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.002)
HANG = "hang"  # the server waits until the client's deadline cancels the call


@dataclass
class Seen:
    request_id: str
    api_key: str
    time_remaining: float | None


@dataclass
class ScriptedService(prediction_pb2_grpc.PredictionServiceServicer):
    """Answers each call with the next scripted outcome: a status code, HANG, or (when the script is empty) OK."""

    script: list[grpc.StatusCode | str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    async def _outcome(self, request_id: str, context: grpc.aio.ServicerContext) -> None:
        key = dict(context.invocation_metadata() or ()).get("x-api-key", "")
        self.seen.append(Seen(request_id, str(key), context.time_remaining()))
        outcome = self.script.pop(0) if self.script else None
        if outcome == HANG:
            await asyncio.Event().wait()
        if isinstance(outcome, grpc.StatusCode):
            await context.abort(outcome, f"scripted {outcome.name}")

    async def Predict(
        self, request: prediction_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> prediction_pb2.PredictResponse:
        await self._outcome(request.request_id, context)
        return prediction_pb2.PredictResponse(
            request_id=request.request_id,
            model=request.model,
            model_version="1",
            entity_id=request.entity_id,
            prediction=common_pb2.Prediction(score=request.context["amount"].number_value / 1000, label="legit"),
            arm="stable",
        )

    async def PredictBatch(
        self, request: prediction_pb2.PredictBatchRequest, context: grpc.aio.ServicerContext
    ) -> prediction_pb2.PredictBatchResponse:
        await self._outcome(request.request_id, context)
        results = [
            prediction_pb2.PredictResponse(entity_id=i.entity_id, degraded=i.entity_id == "ghost")
            for i in request.items
        ]
        return prediction_pb2.PredictBatchResponse(request_id=request.request_id, results=results)

    async def GetPrediction(
        self, request: jobs_pb2.GetPredictionRequest, context: grpc.aio.ServicerContext
    ) -> prediction_pb2.GetPredictionResponse:
        """Ids starting "done" are scored, "failed" failed, "gone" unknown; the rest pending."""
        await self._outcome(request.request_id, context)
        rid = request.request_id
        if rid.startswith("gone"):
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such prediction")
        if rid.startswith("done"):
            response = prediction_pb2.PredictResponse(
                request_id=rid, model="fraud", prediction=common_pb2.Prediction(score=0.5)
            )
            return prediction_pb2.GetPredictionResponse(
                request_id=rid, state=jobs_pb2.PREDICTION_STATE_DONE, response=response
            )
        if rid.startswith("failed"):
            return prediction_pb2.GetPredictionResponse(
                request_id=rid, state=jobs_pb2.PREDICTION_STATE_FAILED, error_code="UNAVAILABLE", error_message="x"
            )
        return prediction_pb2.GetPredictionResponse(request_id=rid, state=jobs_pb2.PREDICTION_STATE_PENDING)


@pytest.fixture
async def served() -> AsyncIterator[tuple[ScriptedService, str]]:
    service = ScriptedService()
    server = grpc.aio.server()
    prediction_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield service, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_unavailable_is_retried_with_the_same_request_id_and_key(served: tuple[ScriptedService, str]) -> None:
    service, target = served
    service.script = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]
    async with AsyncClient(target, plaintext=True, api_key="k1", retry=FAST) as client:
        p = await client.predict("fraud", "u1", {"amount": 250.0})
    assert p.score == 0.25 and p.model_version == "1" and p.degraded is False
    assert len(service.seen) == 3  # two UNAVAILABLE, then the answer
    assert {s.api_key for s in service.seen} == {"k1"}
    assert len({s.request_id for s in service.seen}) == 1 and service.seen[0].request_id


async def test_invalid_argument_is_never_retried(served: tuple[ScriptedService, str]) -> None:
    service, target = served
    service.script = [grpc.StatusCode.INVALID_ARGUMENT]
    async with AsyncClient(target, plaintext=True, retry=FAST) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.predict("fraud", "u1", {"amount": 1.0})
    assert len(service.seen) == 1 and info.value.attempts == 1
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and info.value.message == "scripted INVALID_ARGUMENT"


async def test_retries_stop_after_max_attempts(served: tuple[ScriptedService, str]) -> None:
    service, target = served
    service.script = [grpc.StatusCode.UNAVAILABLE] * 10
    async with AsyncClient(target, plaintext=True, retry=RetryPolicy(3, 0.001, 0.002)) as client:
        with pytest.raises(UnavailableError) as info:
            await client.predict_batch("fraud", ["u1"])
    assert len(service.seen) == 3 and info.value.attempts == 3


async def test_the_deadline_reaches_the_server_and_is_enforced(served: tuple[ScriptedService, str]) -> None:
    service, target = served
    service.script = [HANG]
    async with AsyncClient(target, plaintext=True, retry=FAST, timeout_s=30) as client:
        with pytest.raises(DeadlineExceededError):
            await client.predict("fraud", "u1", {"amount": 1.0}, timeout_s=0.3)  # the per-call deadline wins
    (seen,) = service.seen
    assert seen.time_remaining is not None and 0 < seen.time_remaining <= 0.3


async def test_retries_never_outlive_the_deadline(served: tuple[ScriptedService, str]) -> None:
    service, target = served
    service.script = [grpc.StatusCode.UNAVAILABLE] * 10
    slow = RetryPolicy(max_attempts=10, initial_backoff_s=60, max_backoff_s=60, multiplier=1)
    async with AsyncClient(target, plaintext=True, retry=slow) as client:
        with pytest.raises(DeadlineExceededError) as info:
            # a back-off of up to 60 s is cut to what is left of the 0.3 s deadline
            await client.predict("fraud", "u1", {"amount": 1.0}, timeout_s=0.3)
    assert len(service.seen) <= 2 and info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_sync_client_retries_unavailable_but_not_invalid_argument(served: tuple[ScriptedService, str]) -> None:
    service, target = served

    def call() -> tuple[float, str]:
        with Client(target, plaintext=True, api_key="k2", retry=FAST) as client:
            batch = client.predict_batch("fraud", ["u1", BatchItem("ghost", {"amount": 3})])
            assert [r.degraded for r in batch.results] == [False, True] and batch.degraded
            service.script = [grpc.StatusCode.INVALID_ARGUMENT]
            try:
                client.predict("fraud", "u1", {"amount": 1.0})
            except InvalidRequestError as err:
                return batch.results[0].score, err.code.name
            raise AssertionError("INVALID_ARGUMENT did not raise")

    service.script = [grpc.StatusCode.UNAVAILABLE]
    _, code = await asyncio.to_thread(call)
    assert code == "INVALID_ARGUMENT"
    assert len(service.seen) == 3  # batch: UNAVAILABLE + answer; predict: one INVALID_ARGUMENT, no retry
    assert {s.api_key for s in service.seen} == {"k2"}


@pytest.mark.parametrize(
    ("code", "family"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidRequestError),
        (grpc.StatusCode.FAILED_PRECONDITION, InvalidRequestError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.UNAUTHENTICATED, AuthenticationError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, RateLimitedError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (grpc.StatusCode.INTERNAL, ServerError),
        (grpc.StatusCode.UNIMPLEMENTED, ServerError),
    ],
)
def test_one_exception_class_per_status_family(code: grpc.StatusCode, family: type[Exception]) -> None:
    err = error_for(code, "m")
    assert type(err) is family and err.code == code and str(err) == f"{code.name}: m"


def test_backoff_is_jittered_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=10, initial_backoff_s=0.1, max_backoff_s=1.0, multiplier=2)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        samples = [policy.backoff_s(attempt, rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8 and min(samples) < ceiling * 0.2  # spread over the whole range
    assert not policy.should_retry(grpc.StatusCode.INVALID_ARGUMENT, 1)
    assert policy.should_retry(grpc.StatusCode.UNAVAILABLE, 9) and not policy.should_retry(
        grpc.StatusCode.UNAVAILABLE, 10
    )


def test_a_context_value_of_another_type_is_refused_before_sending() -> None:
    from predmesh.client.convert import context_to_pb

    with pytest.raises(TypeError, match="context\\['amount'\\]"):
        context_to_pb({"amount": [1, 2]})  # type: ignore[dict-item]


async def test_get_prediction_states_and_not_found(served: tuple[ScriptedService, str]) -> None:
    service, target = served
    service.script = [grpc.StatusCode.UNAVAILABLE]  # polled through the same retry policy
    async with AsyncClient(target, plaintext=True, retry=FAST) as client:
        done = await client.get_prediction("done-1")
        pending = await client.get_prediction("p-1")
        failed = await client.get_prediction("failed-1")
        with pytest.raises(NotFoundError):
            await client.get_prediction("gone-1")
    assert done.state == "DONE" and done.done and done.result is not None and done.result.score == 0.5
    assert pending.state == "PENDING" and not pending.done and pending.result is None
    assert failed.state == "FAILED" and failed.done and failed.error_code == "UNAVAILABLE"
    assert [s.request_id for s in service.seen][:2] == ["done-1", "done-1"]


async def test_sync_get_prediction(served: tuple[ScriptedService, str]) -> None:
    _, target = served

    def call() -> str:
        with Client(target, plaintext=True, retry=FAST) as client:
            status = client.get_prediction("done-2")
            assert status.result is not None and status.result.request_id == "done-2"
            return status.state

    assert await asyncio.to_thread(call) == "DONE"
