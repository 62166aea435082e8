"""GetFeatures / DescribeGroup through a real grpc.aio server and real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from predmesh.local.procs import RedisServer
from predmesh.v1 import common_pb2, features_pb2, features_pb2_grpc
from services.features.app import FeaturesApp
from tests.features.conftest import StartApp, seed

GOOD_USER = {
    "account_age_days": "400.5",
    "txn_count_7d": "12",
    "avg_txn_amount_30d": "80.25",
    "chargeback_rate_90d": "0.01",
    "country": "GB",
    "is_verified": "1",
}


def num(x: float) -> common_pb2.Value:
    return common_pb2.Value(number_value=x)


def text(x: str) -> common_pb2.Value:
    return common_pb2.Value(string_value=x)


def flag(x: bool) -> common_pb2.Value:
    return common_pb2.Value(bool_value=x)


def request(
    entities: list[tuple[str, dict[str, common_pb2.Value]]] | list[str],
    features: list[str],
    entity_type: str = "user",
) -> features_pb2.GetFeaturesRequest:
    keys = []
    for entity in entities:
        entity_id, context = (entity, {}) if isinstance(entity, str) else entity
        keys.append(features_pb2.EntityKey(entity_id=entity_id, context=context))
    return features_pb2.GetFeaturesRequest(entity_type=entity_type, entities=keys, features=features)


def plain(value: common_pb2.Value) -> tuple[str | None, Any]:
    kind = value.WhichOneof("kind")
    return kind, getattr(value, kind) if kind else None


async def test_stored_and_context_features(stub: features_pb2_grpc.FeatureServiceStub, redis_url: str) -> None:
    await seed(redis_url, {"u1": GOOD_USER})
    names = ["account_age_days", "txn_count_7d", "country", "is_verified", "amount", "channel", "hour_of_day"]
    context = {"amount": num(12.5), "channel": text("app"), "country": text("DE")}
    resp = await stub.GetFeatures(request([("u1", context)], names), timeout=5)
    (vector,) = resp.vectors
    assert vector.entity_id == "u1" and not vector.entity_unknown
    assert [plain(v) for v in vector.values] == [
        ("number_value", 400.5),
        ("number_value", 12.0),
        ("string_value", "DE"),  # context overrides the stored GB
        ("bool_value", True),
        ("number_value", 12.5),
        ("string_value", "app"),
        ("number_value", 12.0),  # request feature not supplied -> default
    ]
    assert list(vector.missing) == ["hour_of_day"]
    assert list(vector.invalid) == []


async def test_missing_and_invalid_values_get_defaults(
    stub: features_pb2_grpc.FeatureServiceStub, redis_url: str
) -> None:
    await seed(
        redis_url,
        {
            "u2": {
                "txn_count_7d": "abc",
                "chargeback_rate_90d": "2",  # above max 1
                "country": "XX",  # not a category
                "is_verified": "true",  # accepted spelling
                "avg_txn_amount_30d": "nan",
            }
        },
    )
    names = [
        "account_age_days",
        "txn_count_7d",
        "chargeback_rate_90d",
        "country",
        "is_verified",
        "avg_txn_amount_30d",
        "hour_of_day",
        "channel",
        "amount",
    ]
    resp = await stub.GetFeatures(request(["u2"], names), timeout=5)
    (vector,) = resp.vectors
    assert not vector.entity_unknown
    assert [plain(v) for v in vector.values] == [
        ("number_value", 365.0),
        ("number_value", 5.0),
        ("number_value", 0.0),
        ("string_value", "other"),
        ("bool_value", True),
        ("number_value", 50.0),
        ("number_value", 12.0),
        ("string_value", "web"),
        ("number_value", 0.0),
    ]
    assert list(vector.missing) == ["account_age_days", "hour_of_day", "channel", "amount"]
    assert list(vector.store_missing) == ["account_age_days"]  # request features are the caller's choice
    assert list(vector.invalid) == ["txn_count_7d", "chargeback_rate_90d", "country", "avg_txn_amount_30d"]


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("amount", text("abc"), "expected float, got a string 'abc'"),
        ("amount", num(float("nan")), "nan is not a finite number"),
        ("amount", num(float("inf")), "inf is not a finite number"),
        ("hour_of_day", num(30), "30.0 is outside [0.0, 23.0]"),
        ("hour_of_day", num(2.5), "expected an integral int"),
        ("channel", num(1), "expected a category, got a number"),
        ("channel", text("fax"), "'fax' is not one of"),
        ("amount", common_pb2.Value(), "no value set"),
    ],
)
async def test_an_invalid_context_value_is_invalid_argument_naming_the_field(
    stub: features_pb2_grpc.FeatureServiceStub, redis_url: str, name: str, value: common_pb2.Value, why: str
) -> None:
    await seed(redis_url, {"u2": GOOD_USER})
    good = {"amount": num(10.0), "hour_of_day": num(3), "channel": text("web")}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetFeatures(request([("u1", good), ("u2", {**good, name: value})], ["amount", "country"]), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"entities[1].context['{name}']" in (err.value.details() or "")
    assert why in (err.value.details() or "")


async def test_an_out_of_range_stored_value_falls_back_to_its_default_and_is_counted(
    stub: features_pb2_grpc.FeatureServiceStub, redis_url: str
) -> None:
    await seed(redis_url, {"u3": {**GOOD_USER, "chargeback_rate_90d": "7"}})
    resp = await stub.GetFeatures(request(["u3"], ["chargeback_rate_90d"]), timeout=5)
    (vector,) = resp.vectors
    assert [plain(v) for v in vector.values] == [("number_value", 0.0)]
    assert list(vector.invalid) == ["chargeback_rate_90d"] and not vector.missing and not vector.store_missing


async def test_unknown_entities_and_order(stub: features_pb2_grpc.FeatureServiceStub, redis_url: str) -> None:
    await seed(redis_url, {"u1": GOOD_USER, "u3": {"is_verified": "0"}})
    names = ["is_verified", "country", "txn_count_7d"]
    resp = await stub.GetFeatures(request(["ghost", "u1", "u3", "u1"], names), timeout=5)
    assert [v.entity_id for v in resp.vectors] == ["ghost", "u1", "u3", "u1"]
    ghost, u1, u3, u1_again = resp.vectors
    assert ghost.entity_unknown and list(ghost.missing) == names
    assert [plain(v) for v in ghost.values] == [
        ("bool_value", False),
        ("string_value", "other"),
        ("number_value", 5.0),
    ]
    assert not u1.entity_unknown and [plain(v)[1] for v in u1.values] == [True, "GB", 12.0]
    assert u1_again == u1
    # A hash that exists but lacks the requested fields is known, with those fields missing.
    assert not u3.entity_unknown
    assert [plain(v)[1] for v in u3.values] == [False, "other", 5.0]
    assert list(u3.missing) == ["country", "txn_count_7d"]


async def test_describe_group(stub: features_pb2_grpc.FeatureServiceStub) -> None:
    info = await stub.DescribeGroup(features_pb2.DescribeGroupRequest(entity_type="user"), timeout=5)
    assert info.entity_type == "user"
    by_name = {f.name: f for f in info.features}
    assert len(info.features) == 9
    country = by_name["country"]
    assert (country.dtype, country.source) == ("category", "store")
    assert list(country.categories) == ["US", "GB", "DE", "FR", "IN", "BR", "other"]
    assert plain(country.default) == ("string_value", "other")
    assert not country.has_min and not country.has_max
    hour = by_name["hour_of_day"]
    assert (hour.dtype, hour.source, hour.has_min, hour.min, hour.has_max, hour.max) == (
        "int",
        "request",
        True,
        0.0,
        True,
        23.0,
    )
    assert plain(by_name["is_verified"].default) == ("bool_value", False)


@pytest.mark.parametrize(
    ("req", "code", "detail"),
    [
        (request(["u1"], ["country"], entity_type="shop"), grpc.StatusCode.NOT_FOUND, "shop"),
        (request(["u1"], ["country", "shoe_size"]), grpc.StatusCode.INVALID_ARGUMENT, "shoe_size"),
        (
            request([("u1", {"shoe_size": num(1)})], ["country"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "shoe_size",
        ),
        (request([], ["country"]), grpc.StatusCode.INVALID_ARGUMENT, "at least one entity"),
        (
            request(["u1", ""], ["country"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "entities[1].entity_id is empty",
        ),
        (request(["x" * 257], ["country"]), grpc.StatusCode.INVALID_ARGUMENT, "longer than 256"),
        (
            request([f"u{i}" for i in range(9)], ["country"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "too many entities",
        ),
        (request(["u1"], []), grpc.StatusCode.INVALID_ARGUMENT, "at least one feature"),
    ],
)
async def test_bad_requests_get_clear_status(
    stub: features_pb2_grpc.FeatureServiceStub,
    req: features_pb2.GetFeaturesRequest,
    code: grpc.StatusCode,
    detail: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetFeatures(req, timeout=5)
    assert info.value.code() == code
    assert detail in (info.value.details() or "")


async def test_describe_unknown_group_is_not_found(stub: features_pb2_grpc.FeatureServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.DescribeGroup(features_pb2.DescribeGroupRequest(entity_type="shop"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def _commandstats(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_one_pipelined_round_trip_per_request(stub: features_pb2_grpc.FeatureServiceStub, redis_url: str) -> None:
    await seed(redis_url, {f"u{i}": GOOD_USER for i in range(5)})
    client = aioredis.Redis.from_url(redis_url)
    try:
        await stub.GetFeatures(request(["u0"], ["country"]), timeout=5)  # warm the connection
        before = await _commandstats(client)
        ids = [f"u{i}" for i in range(5)] + ["ghost"]
        resp = await stub.GetFeatures(request(ids, ["country", "txn_count_7d", "amount", "country"]), timeout=5)
        after = await _commandstats(client)
    finally:
        await client.aclose()
    assert len(resp.vectors) == 6
    delta = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    # One HGETALL per entity, nothing else (the INFO call is ours).
    assert delta == {"hgetall": 6, "info": 1}


async def test_store_sends_one_write_per_fetch(redis_url: str) -> None:
    """The whole batch leaves in one socket write: a single round trip."""
    from redis.asyncio.connection import Connection

    from services.features.core.store import RedisFeatureStore

    sends: list[int] = []

    class CountingConnection(Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sends.append(1)
            await super().send_packed_command(command, check_health)

    await seed(redis_url, {"a": {"country": "US"}, "b": {"country": "FR"}})
    pool = aioredis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    store = RedisFeatureStore(aioredis.Redis(connection_pool=pool))
    try:
        await store.ping()
        sends.clear()
        entities = await store.fetch("user", ["a", "b", "c"], ["country", "is_verified"])
    finally:
        await store.close()
    assert len(sends) == 1
    assert [e.exists for e in entities] == [True, True, False]
    assert [e.fields["country"] for e in entities] == [b"US", b"FR", None]


async def test_cache_serves_hot_entities_until_ttl(start_app: StartApp, redis_url: str) -> None:
    app = await start_app(redis_url=redis_url, cache_ttl_ms=300, cache_max_entries=100)
    await seed(redis_url, {"u1": {"country": "US"}})
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = features_pb2_grpc.FeatureServiceStub(channel)
            first = await stub.GetFeatures(request(["u1"], ["country"]), timeout=5)
            started = time.monotonic()
            await client.hset("features:user:u1", "country", "FR")
            before = await _commandstats(client)
            cached = await stub.GetFeatures(request(["u1"], ["country"]), timeout=5)
            after = await _commandstats(client)
            await asyncio.sleep(max(0.0, 0.35 - (time.monotonic() - started)))
            fresh = await stub.GetFeatures(request(["u1"], ["country"]), timeout=5)
    finally:
        await client.aclose()
    assert plain(first.vectors[0].values[0])[1] == "US"
    assert plain(cached.vectors[0].values[0])[1] == "US"  # stale within the TTL, no Redis read
    assert after.get("hgetall") == before.get("hgetall")
    assert plain(fresh.vectors[0].values[0])[1] == "FR"
    assert app.cache is not None and app.cache.hits == 1


async def test_redis_stopped_gives_unavailable_then_recovers(start_app: StartApp, tmp_path: Any) -> None:
    server = RedisServer(workdir=tmp_path / "redis")
    await asyncio.to_thread(server.start)
    try:
        app = await start_app(redis_url=server.url, redis_timeout_ms=200)
        await seed(server.url, {"u1": {"country": "IN"}})
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = features_pb2_grpc.FeatureServiceStub(channel)
            ok = await stub.GetFeatures(request(["u1"], ["country"]), timeout=5)
            assert plain(ok.vectors[0].values[0])[1] == "IN"

            await asyncio.to_thread(server.stop)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetFeatures(request(["u1"], ["country"]), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "feature store unavailable" in (info.value.details() or "")
            assert time.monotonic() - started < 2.0

            # Same port again: the pool reconnects and requests succeed.
            server = RedisServer(port=server.port, workdir=tmp_path / "redis2")
            await asyncio.to_thread(server.start)
            await seed(server.url, {"u1": {"country": "BR"}})
            again = await stub.GetFeatures(request(["u1"], ["country"]), timeout=5)
            assert plain(again.vectors[0].values[0])[1] == "BR"
    finally:
        await asyncio.to_thread(server.stop)


async def test_redis_timeout_gives_unavailable(start_app: StartApp) -> None:
    """A Redis that accepts connections but never answers: UNAVAILABLE within the timeout budget."""
    held: list[asyncio.StreamWriter] = []

    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        app: FeaturesApp = await start_app(redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_ms=50)
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = features_pb2_grpc.FeatureServiceStub(channel)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetFeatures(request(["u1"], ["country"]), timeout=5)
            elapsed = time.monotonic() - started
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "Timeout" in (info.value.details() or "")
    assert elapsed < 1.0
