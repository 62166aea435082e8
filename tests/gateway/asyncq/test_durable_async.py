"""Durable PredictAsync with the real broker (tansu) and a real redis-server: acceptance only once
queued, polling, scoring once per request id, callbacks with retries and dead letters, and a
gateway killed with SIGKILL mid-flight whose accepted request is still answered by another."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import grpc
import pytest
import redis

from predmesh.common.values import scalar_to_value
from predmesh.local.kafka import TansuBroker
from predmesh.local.procs import free_port
from predmesh.v1 import jobs_pb2, prediction_pb2, prediction_pb2_grpc
from services.gateway.app import GatewayApp
from tests.gateway.asyncq.support import (
    AUTH,
    HoldingUpstreams,
    Names,
    environment,
    gateway_settings,
    read_topic,
    serving,
    settings,
    until,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture
def names(tansu: TansuBroker) -> Names:
    return Names.fresh(tansu.bootstrap_servers)


@pytest.fixture
def fields(tansu: TansuBroker, redis_url: str, upstreams: HoldingUpstreams, names: Names) -> dict[str, Any]:
    return gateway_settings(tansu.bootstrap_servers, redis_url, upstreams.address, names)


async def open_gateway(fields: dict[str, Any], **overrides: Any) -> GatewayApp:
    app = GatewayApp(settings({**fields, **overrides}))
    await app.start()
    return app


def request(request_id: str, amount: float = 420.0) -> prediction_pb2.PredictRequest:
    return prediction_pb2.PredictRequest(
        request_id=request_id, model="fraud", entity_id="u1", context={"amount": scalar_to_value(amount)}
    )


async def poll(stub: prediction_pb2_grpc.PredictionServiceStub, request_id: str, key: str = "fraud-key") -> Any:
    return await stub.GetPrediction(
        jobs_pb2.GetPredictionRequest(request_id=request_id), metadata=(("x-api-key", key),), timeout=5
    )


async def test_accepted_request_is_scored_polled_published_and_delivered(
    fields: dict[str, Any], upstreams: HoldingUpstreams, names: Names, tansu: TansuBroker
) -> None:
    app = await open_gateway(fields)
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = prediction_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await poll(stub, "never-submitted")
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
            accepted = await stub.PredictAsync(
                prediction_pb2.PredictAsyncRequest(request=request("a-1"), callback_target=upstreams.address),
                metadata=AUTH,
                timeout=10,
            )
            assert accepted.request_id == "a-1"
            await asyncio.wait_for(upstreams.delivered.wait(), 20)
            delivery = upstreams.deliveries[0]
            assert delivery.request_id == "a-1" and delivery.response.prediction.score == pytest.approx(0.42)
            polled = await poll(stub, "a-1")
            assert polled.state == jobs_pb2.PREDICTION_STATE_DONE
            assert polled.response.prediction.score == pytest.approx(0.42)
            with pytest.raises(grpc.aio.AioRpcError) as foreign:  # another key cannot see it
                await poll(stub, "a-1", key="other-key")
            assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
            # Polling only (no callback): a request that fails to score is FAILED with its status.
            await stub.PredictAsync(
                prediction_pb2.PredictAsyncRequest(
                    request=prediction_pb2.PredictRequest(request_id="a-2", model="nope", entity_id="u1")
                ),
                metadata=AUTH,
                timeout=10,
            )

            async def failed() -> bool:
                return (await poll(stub, "a-2")).state == jobs_pb2.PREDICTION_STATE_FAILED

            await until(failed)
            assert (await poll(stub, "a-2")).error_code == "NOT_FOUND"
        records = await asyncio.to_thread(read_topic, tansu.bootstrap_servers, names.results, 2)
        assert sorted(key for key, _, _ in records) == [b"a-1", b"a-2"]
        records.sort()
        result = prediction_pb2.CallbackDelivery.FromString(records[0][1])
        assert result.response.prediction.score == pytest.approx(0.42)
        await until(lambda: app.metrics.async_count("delivered") == 1)
        assert app.metrics.registry.get_sample_value("predmesh_gateway_async_pending") == 0
    finally:
        await app.stop()


async def test_duplicate_submission_is_scored_once(fields: dict[str, Any], upstreams: HoldingUpstreams) -> None:
    app = await open_gateway(fields)
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = prediction_pb2_grpc.PredictionServiceStub(channel)
            submit = prediction_pb2.PredictAsyncRequest(request=request("dup-1"), callback_target=upstreams.address)
            first = await stub.PredictAsync(submit, metadata=AUTH, timeout=10)
            await asyncio.wait_for(upstreams.delivered.wait(), 20)
            second = await stub.PredictAsync(submit, metadata=AUTH, timeout=10)  # after the first was answered
            third = await stub.PredictAsync(submit, metadata=AUTH, timeout=10)
            assert first.request_id == second.request_id == third.request_id == "dup-1"
            await until(lambda: app.metrics.async_count("duplicate") == 2)
            assert (await poll(stub, "dup-1")).state == jobs_pb2.PREDICTION_STATE_DONE
        assert len(upstreams.infer_requests) == 1  # scored once
        assert app.metrics.async_count("scored") == 1
        assert len(upstreams.deliveries) == 1 and app.metrics.async_count("delivered") == 1
        # A duplicate of an answered request is not pending again (its mark was written before the ack).
        client = redis.Redis.from_url(fields["async_redis_url"])
        try:
            assert client.zcard("predmesh:async:pending") == 0
        finally:
            client.close()
    finally:
        await app.stop()


async def test_callback_target_down_past_the_horizon_is_dead_lettered(
    fields: dict[str, Any], names: Names, tansu: TansuBroker
) -> None:
    app = await open_gateway(fields, callback_horizon_s=0.6, callback_backoff_base_ms=50.0)
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = prediction_pb2_grpc.PredictionServiceStub(channel)
            await stub.PredictAsync(
                prediction_pb2.PredictAsyncRequest(request=request("dl-1"), callback_target=down),
                metadata=AUTH,
                timeout=10,
            )
            await until(lambda: app.metrics.async_count("dead_lettered") == 1)
            assert app.metrics.async_count("retried") >= 2  # back-off retries before the horizon
            assert app.metrics.async_count("delivered") == 0
            assert app.metrics.registry.get_sample_value("predmesh_gateway_async_dead_letters") == 1  # the alert's
            assert (await poll(stub, "dl-1")).state == jobs_pb2.PREDICTION_STATE_DONE  # still pollable
        records = await asyncio.to_thread(read_topic, tansu.bootstrap_servers, names.dead, 1)
        assert [key for key, _, _ in records] == [b"dl-1"]
        assert records[0][2]["pm-target"].decode().endswith(down.split(":")[1] + "|0|127.0.0.1")
        dead = prediction_pb2.CallbackDelivery.FromString(records[0][1])
        assert dead.response.prediction.score == pytest.approx(0.42)
        await until(lambda: app.metrics.registry.get_sample_value("predmesh_gateway_async_pending") == 0)
        assert app.metrics.registry.get_sample_value("predmesh_gateway_async_oldest_pending_seconds") == 0
    finally:
        await app.stop()


async def test_gateway_killed_mid_flight_the_request_is_still_answered(
    fields: dict[str, Any], upstreams: HoldingUpstreams
) -> None:
    async with asyncio.timeout(120):  # a hang fails with the await it hung in
        port = free_port()
        env = {**os.environ, **environment({**fields, "port": port}), "PYTHONPATH": ROOT}
        upstreams.hold.clear()  # inference hangs: the first gateway dies while scoring
        first = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.gateway.app",
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        second: GatewayApp | None = None
        try:
            await serving(f"127.0.0.1:{port}")
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = prediction_pb2_grpc.PredictionServiceStub(channel)
                accepted = await stub.PredictAsync(
                    prediction_pb2.PredictAsyncRequest(request=request("kill-1"), callback_target=upstreams.address),
                    metadata=AUTH,
                    timeout=10,
                )
                assert (await poll(stub, "kill-1")).state == jobs_pb2.PREDICTION_STATE_PENDING
            await asyncio.wait_for(upstreams.infer_started.wait(), 20)  # scoring in flight in the first gateway
            first.send_signal(signal.SIGKILL)  # kill -9 while it is scoring the accepted request
            await asyncio.wait_for(first.wait(), 10)
            upstreams.hold.set()
            assert upstreams.deliveries == []
            second = await open_gateway(fields)  # same group: takes the uncommitted request over
            await asyncio.wait_for(upstreams.delivered.wait(), 40)
            assert [d.request_id for d in upstreams.deliveries] == [accepted.request_id]
            assert upstreams.deliveries[0].response.prediction.score == pytest.approx(0.42)
            async with grpc.aio.insecure_channel(second.address) as channel:
                polled = await poll(prediction_pb2_grpc.PredictionServiceStub(channel), "kill-1")
            assert polled.state == jobs_pb2.PREDICTION_STATE_DONE
            assert polled.response.prediction.score == pytest.approx(0.42)
        finally:
            if first.returncode is None:
                first.kill()
                await asyncio.wait_for(first.wait(), 10)
            if second is not None:
                await second.stop()


async def test_accepting_resumes_after_a_broker_restart(
    redis_url: str, upstreams: HoldingUpstreams, tmp_path: Any
) -> None:
    broker = TansuBroker(workdir=tmp_path / "tansu")
    broker.start()
    try:
        names = Names.fresh(broker.bootstrap_servers)
        fields = gateway_settings(
            broker.bootstrap_servers, redis_url, upstreams.address, names, async_enqueue_timeout_ms=1500.0
        )
        app = await open_gateway(fields)
        try:
            async with grpc.aio.insecure_channel(app.address) as channel:
                stub = prediction_pb2_grpc.PredictionServiceStub(channel)
                await stub.PredictAsync(
                    prediction_pb2.PredictAsyncRequest(request=request("b-1")), metadata=AUTH, timeout=10
                )
                await asyncio.to_thread(broker.stop)
                await asyncio.to_thread(broker.start)  # memory storage: empty, forgets producer ids
                await asyncio.to_thread(Names.recreate, broker.bootstrap_servers, names)
                accepted = refused = 0
                for _ in range(20):  # until a producer that works again accepts it
                    try:
                        await stub.PredictAsync(
                            prediction_pb2.PredictAsyncRequest(request=request("b-2")), metadata=AUTH, timeout=10
                        )
                        accepted += 1
                        break
                    except grpc.aio.AioRpcError as err:
                        assert err.code() == grpc.StatusCode.UNAVAILABLE
                        refused += 1
                assert accepted == 1, f"still refused after {refused} tries"

                async def done() -> bool:
                    return (await poll(stub, "b-2")).state == jobs_pb2.PREDICTION_STATE_DONE

                await until(done, timeout_s=30)
        finally:
            await app.stop()
    finally:
        broker.stop()
