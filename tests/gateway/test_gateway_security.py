"""The gateway's security behaviour through its real gRPC server (GatewayApp in process):
fail-closed start, API keys, input limits before conversion, generic upstream errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from predmesh.local.procs import free_port
from predmesh.v1 import common_pb2, prediction_pb2, prediction_pb2_grpc
from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings

KEY = "test-key-1"


def settings(**overrides: object) -> GatewaySettings:
    # Upstreams on ports nobody listens on: every call that gets past the gateway's own checks fails.
    base: dict[str, object] = {
        "port": 0,
        "grace_s": 0.1,
        "features_target": f"127.0.0.1:{free_port()}",
        "inference_target": f"127.0.0.1:{free_port()}",
        "api_keys": {KEY: ["*"]},
    }
    return GatewaySettings(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayApp]:
    app = GatewayApp(settings())
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def predict(
    app: GatewayApp, request: object, key: str | None = KEY, method: str = "Predict"
) -> grpc.aio.AioRpcError:
    metadata = [("x-api-key", key)] if key else []
    async with grpc.aio.insecure_channel(app.address) as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await getattr(stub, method)(request, timeout=5, metadata=metadata)
    return info.value


async def test_no_keys_refuses_to_start_unless_anonymous_is_allowed(tmp_path: Path) -> None:
    app = GatewayApp(settings(api_keys={}))
    with pytest.raises(RuntimeError, match="no API keys"):
        await app.start()
    assert app.server is None  # nothing was bound
    empty = tmp_path / "keys.json"
    empty.write_text("{}")
    with pytest.raises(RuntimeError, match="no API keys"):
        await GatewayApp(settings(api_keys={}, api_keys_path=str(empty))).start()
    anonymous = GatewayApp(settings(api_keys={}, allow_anonymous=True))
    await anonymous.start()
    try:
        err = await predict(anonymous, prediction_pb2.PredictRequest(model="fraud", entity_id="u1"), key=None)
        assert err.code() == grpc.StatusCode.UNAVAILABLE  # past auth, then the missing upstream
    finally:
        await anonymous.stop()


async def test_missing_or_unknown_key_is_unauthenticated(gateway: GatewayApp) -> None:
    request = prediction_pb2.PredictRequest(model="fraud", entity_id="u1")
    assert (await predict(gateway, request, key=None)).code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await predict(gateway, request, key="nope")).code() == grpc.StatusCode.UNAUTHENTICATED


async def test_key_file_rotation_without_restart(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"first": ["*"]}')
    app = GatewayApp(settings(api_keys={}, api_keys_path=str(keys), api_keys_poll_ms=50))
    await app.start()
    try:
        request = prediction_pb2.PredictRequest(model="fraud", entity_id="u1")
        assert (await predict(app, request, key="first")).code() == grpc.StatusCode.UNAVAILABLE  # authenticated
        keys.write_text('{"second": ["*"]}')
        deadline = time.monotonic() + 5
        while (await predict(app, request, key="second")).code() == grpc.StatusCode.UNAUTHENTICATED:
            assert time.monotonic() < deadline, "new key not picked up"
        assert (await predict(app, request, key="first")).code() == grpc.StatusCode.UNAUTHENTICATED
        keys.write_text("{not valid")  # a broken file keeps the last good table
        assert (await predict(app, request, key="second")).code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await app.stop()


async def test_upstream_failure_is_generic_for_the_caller(gateway: GatewayApp) -> None:
    err = await predict(gateway, prediction_pb2.PredictRequest(model="fraud", entity_id="u1"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    details = err.details() or ""
    assert details == "inference unavailable"
    assert "127.0.0.1" not in details and "ipv4" not in details


@pytest.mark.parametrize(
    "request_",
    [
        prediction_pb2.PredictRequest(model="fraud\n", entity_id="u1"),
        prediction_pb2.PredictRequest(model="fraud", version="1\n", entity_id="u1"),
        prediction_pb2.PredictRequest(
            model="fraud", entity_id="u1", context={"k" * 129: common_pb2.Value(number_value=1)}
        ),
        prediction_pb2.PredictRequest(
            model="fraud", entity_id="u1", context={"channel": common_pb2.Value(string_value="x" * 5000)}
        ),
    ],
)
async def test_bad_names_and_oversized_fields_are_invalid_argument(gateway: GatewayApp, request_: object) -> None:
    assert (await predict(gateway, request_)).code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_oversized_batch_is_refused_before_conversion(gateway: GatewayApp) -> None:
    # Every item is also malformed (a Value with nothing set): converting even the first one would
    # fail with a different message, so the count message shows nothing was converted first.
    unset = {"amount": common_pb2.Value()}
    items = [prediction_pb2.BatchItem(entity_id=f"u{i}", context=unset) for i in range(100_000)]
    err = await predict(gateway, prediction_pb2.PredictBatchRequest(model="fraud", items=items), method="PredictBatch")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "PredictBatch takes at most 1024 items, got 100000"
