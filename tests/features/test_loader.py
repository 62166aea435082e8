"""The loader: data frames, CSV and Parquet into real Redis, read back through the service."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pandas as pd
import pytest
import redis

from predmesh.demo import FEATURE_REGISTRY, synth
from predmesh.featurestore.registry import load_registry
from predmesh.v1 import features_pb2, features_pb2_grpc
from services.features.errors import LoadError
from services.features.loader import load_file, load_frame, main
from tests.features.conftest import StartApp


@pytest.fixture
def client(redis_url: str):  # type: ignore[no-untyped-def]
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    yield conn
    conn.close()


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity_id": ["a1", "a2", "a3"],
            "txn_count_7d": [3, 0, 7],
            "chargeback_rate_90d": [0.5, None, 0.0],
            "country": ["FR", "US", "other"],
            "is_verified": [True, False, True],
        }
    )


def test_load_frame_writes_text_hashes_and_replaces_old_fields(client: redis.Redis, redis_url: str) -> None:
    client.hset("features:user:a1", mapping={"account_age_days": "9.0", "country": "US"})
    report = load_frame(
        _frame(), "user", redis_url, load_registry(FEATURE_REGISTRY), chunk_size=2, event_time_ms=1_700_000_000_000
    )
    assert (report.entities, report.fields, report.nulls) == (3, 11, 1)
    assert report.columns == ("txn_count_7d", "chargeback_rate_90d", "country", "is_verified")
    # The stale account_age_days is gone: the whole hash was replaced.
    assert client.hgetall("features:user:a1") == {
        "txn_count_7d": "3",
        "chargeback_rate_90d": "0.5",
        "country": "FR",
        "is_verified": "1",
        "@event_time_ms": "1700000000000",  # the reserved event-time field (freshness, ingestion order)
    }
    assert client.hgetall("features:user:a2") == {
        "txn_count_7d": "0",
        "country": "US",
        "is_verified": "0",
        "@event_time_ms": "1700000000000",
    }


def test_load_frame_stamps_the_load_time_by_default(client: redis.Redis, redis_url: str) -> None:
    before = int(time.time() * 1000)
    load_frame(_frame(), "user", redis_url, load_registry(FEATURE_REGISTRY))
    stamp = int(client.hget("features:user:a3", "@event_time_ms") or 0)
    assert before <= stamp <= int(time.time() * 1000)


def _parquet_ok() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


PARQUET_OK = _parquet_ok()


@pytest.mark.parametrize(
    "suffix",
    [
        ".csv",
        pytest.param(".parquet", marks=pytest.mark.skipif(not PARQUET_OK, reason="pyarrow unusable here")),
    ],
)
async def test_load_file_then_serve(suffix: str, tmp_path: Path, redis_url: str, start_app: StartApp) -> None:
    path = tmp_path / f"users{suffix}"
    frame = _frame()
    frame["entity_id"] = ["007", "a2", "a3"]  # CSV must keep leading zeros of ids
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    report = load_file(path, "user", redis_url, FEATURE_REGISTRY)
    assert report.entities == 3 and report.nulls == 1

    app = await start_app(redis_url=redis_url)
    async with grpc.aio.insecure_channel(app.address) as channel:
        stub = features_pb2_grpc.FeatureServiceStub(channel)
        resp = await stub.GetFeatures(
            features_pb2.GetFeaturesRequest(
                entity_type="user",
                entities=[features_pb2.EntityKey(entity_id=i) for i in ("007", "a2")],
                features=[
                    "txn_count_7d",
                    "chargeback_rate_90d",
                    "country",
                    "is_verified",
                    "account_age_days",
                ],
            ),
            timeout=5,
        )
    first, second = resp.vectors
    assert [v.number_value for v in first.values[:2]] == [3.0, 0.5]
    assert first.values[2].string_value == "FR" and first.values[3].bool_value is True
    assert list(first.missing) == ["account_age_days"] and not first.invalid and not first.entity_unknown
    assert second.values[1].number_value == 0.0 and list(second.missing) == [
        "chargeback_rate_90d",
        "account_age_days",
    ]


@pytest.mark.skipif(PARQUET_OK, reason="pyarrow works here (covered by test_load_file_then_serve)")
def test_parquet_without_pyarrow_is_a_clear_error(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "users.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(LoadError, match="Parquet needs a working pyarrow"):
        load_file(path, "user", redis_url, FEATURE_REGISTRY)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"entity_id": ["a"], "shoe_size": [42]}), r"unknown columns .*shoe_size"),
        (pd.DataFrame({"entity_id": ["a"], "amount": [1.0]}), "request-sourced"),
        (pd.DataFrame({"id": ["a"], "country": ["US"]}), "'entity_id' is required"),
        (pd.DataFrame({"entity_id": ["a", "a"], "country": ["US", "FR"]}), "duplicate entity ids"),
        (pd.DataFrame({"entity_id": ["a", ""], "country": ["US", "FR"]}), "empty or over-long"),
        (pd.DataFrame({"entity_id": ["a", "b"], "country": ["US", "Mars"]}), r"row 1 \(b\) country='Mars'"),
        (pd.DataFrame({"entity_id": ["a"], "chargeback_rate_90d": [3.0]}), "1 invalid values"),
        (pd.DataFrame({"entity_id": ["a"]}), "no feature columns"),
    ],
)
def test_bad_frames_write_nothing(frame: pd.DataFrame, message: str, client: redis.Redis, redis_url: str) -> None:
    with pytest.raises(LoadError, match=message):
        load_frame(frame, "user", redis_url, FEATURE_REGISTRY)
    assert client.dbsize() == 0


def test_load_demo_users(client: redis.Redis, redis_url: str) -> None:
    from predmesh.demo.load import load_demo

    report = load_demo(redis_url, n=40)
    assert report.entities == 40 and report.nulls == 0
    shops = synth.merchants()
    assert client.dbsize() == 40 + len(shops)  # and the merchants fraud:3 reads
    assert client.hget("features:merchant:m0003", "category") == shops.loc["m0003", "category"]
    expected = synth.users(40).loc["u00007"]
    stored = client.hgetall("features:user:u00007")
    assert float(stored["account_age_days"]) == expected["account_age_days"]
    assert stored["country"] == expected["country"]
    assert stored["is_verified"] == ("1" if expected["is_verified"] else "0")


def test_cli_main(tmp_path: Path, redis_url: str, client: redis.Redis, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "users.csv"
    _frame().to_csv(path, index=False)
    registry = tmp_path / "reg.yaml"
    registry.write_text(FEATURE_REGISTRY.read_text())
    code = main(["--redis-url", redis_url, "--entity-type", "user", "--registry", str(registry), str(path)])
    assert code == 0
    assert "loaded 3 user entities" in capsys.readouterr().out
    assert client.hget("features:user:a3", "country") == "other"

    bad = tmp_path / "bad.csv"
    bad.write_text("entity_id,shoe_size\na,42\n")
    reg = ["--registry", str(registry)]
    assert main(["--redis-url", redis_url, *reg, str(bad)]) == 1
    assert "unknown columns" in capsys.readouterr().err
    assert main(["--redis-url", redis_url, *reg, str(tmp_path / "users.json")]) == 1
    assert "unsupported file type" in capsys.readouterr().err
    assert main(["--redis-url", redis_url, *reg, "--entity-type", "shop", str(path)]) == 1
    assert "unknown entity type" in capsys.readouterr().err
