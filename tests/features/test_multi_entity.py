"""Several entity types in one GetFeatures: `merchant.*` features of each row's related merchant, read in the
same pipelined round trip as the users (counted with Redis INFO commandstats on the real server)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import redis
import yaml

from predmesh.common.values import scalar_from_value
from predmesh.v1 import features_pb2, features_pb2_grpc
from tests.features.conftest import StartApp, seed

REGISTRY = {
    "entities": {
        "user": {
            "features": {
                "spend": {"dtype": "float", "source": "store", "default": -1.0},
                "amount": {"dtype": "float", "source": "request", "default": 0.0},
            }
        },
        "merchant": {
            "features": {
                "risk": {"dtype": "float", "source": "store", "default": 0.5, "min": 0, "max": 1},
                "mcc": {"dtype": "category", "source": "store", "default": "other", "categories": ["food", "other"]},
                "hint": {"dtype": "float", "source": "request", "default": 0.0},
            }
        },
    }
}


def _commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",)}


@pytest.fixture
async def stub(start_app: StartApp, redis_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(REGISTRY))
    app = await start_app(redis_url=redis_url, registry_path=path)
    async with grpc.aio.insecure_channel(app.address) as channel:
        yield features_pb2_grpc.FeatureServiceStub(channel)


def _request(rows: list[tuple[str, dict[str, str]]], features: list[str]) -> features_pb2.GetFeaturesRequest:
    return features_pb2.GetFeaturesRequest(
        entity_type="user",
        entities=[features_pb2.EntityKey(entity_id=e) for e, _ in rows],
        features=features,
        related=[features_pb2.RelatedEntities(ids=ids) for _, ids in rows],
    )


async def test_two_groups_are_read_in_one_round_trip(stub, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    await seed(redis_url, {"u1": {"spend": "10.0"}, "u2": {"spend": "20.0"}})
    await seed(redis_url, {"m1": {"risk": "0.9", "mcc": "food"}}, entity_type="merchant")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.config_resetstat()
        response = await stub.GetFeatures(
            _request(
                [("u1", {"merchant": "m1"}), ("u2", {"merchant": "m1"}), ("u3", {})],
                ["spend", "merchant.risk", "merchant.mcc"],
            )
        )
        commands = _commands(client)
    finally:
        client.close()
    got = [([scalar_from_value(v) for v in vec.values], list(vec.missing)) for vec in response.vectors]
    assert got == [
        ([10.0, 0.9, "food"], []),
        ([20.0, 0.9, "food"], []),
        # no related merchant (and an unknown user): every value defaulted and listed missing
        ([-1.0, 0.5, "other"], ["spend", "merchant.risk", "merchant.mcc"]),
    ]
    assert list(response.vectors[2].store_missing) == ["spend", "merchant.risk", "merchant.mcc"]
    # 3 users + 1 distinct merchant = 4 HGETALLs and nothing else (no per-group or per-entity extra command).
    assert {k: v for k, v in commands.items() if k != "config|resetstat"} == {"hgetall": 4}


@pytest.mark.parametrize(
    ("rows", "features", "message"),
    [
        ([("u1", {"shop": "s1"})], ["spend"], "entity type 'shop' is not registered"),
        ([("u1", {"merchant": ""})], ["spend"], "related['merchant'] is empty"),
        ([("u1", {})], ["merchant.nope"], "'merchant.nope' is not registered"),
        ([("u1", {})], ["merchant.hint"], "request-sourced"),
        ([("u1", {})], ["shop.risk"], "entity type 'shop' is not registered"),
    ],
)
async def test_bad_related_entities_are_invalid_argument(stub, rows, features, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetFeatures(_request(rows, features))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.value.details() or "")


async def test_related_rows_must_align_with_entities(stub) -> None:  # type: ignore[no-untyped-def]
    request = _request([("u1", {"merchant": "m1"})], ["spend"])
    request.entities.add(entity_id="u2")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetFeatures(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "aligned" in (err.value.details() or "")
