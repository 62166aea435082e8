"""Freshness through the real service: a stored value older than `max_age_s` is served as the default and
listed `stale`; an entity without a stored event time (loaded before event times existed) is never stale."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
import yaml

from predmesh.common.values import scalar_from_value
from predmesh.featurestore.registry import parse_registry
from predmesh.v1 import features_pb2, features_pb2_grpc
from services.features.errors import RegistryError
from tests.features.conftest import StartApp, seed

REGISTRY = {
    "entities": {
        "user": {
            "max_age_s": 60,
            "features": {
                "spend": {"dtype": "float", "source": "store", "default": -1.0},
                "tier": {"dtype": "int", "source": "store", "default": 0, "max_age_s": 86400},
                "amount": {"dtype": "float", "source": "request", "default": 0.0},
            },
        }
    }
}


async def test_values_older_than_max_age_are_defaults_listed_stale(
    start_app: StartApp, redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(REGISTRY))
    app = await start_app(redis_url=redis_url, registry_path=path)
    now_ms = int(time.time() * 1000)
    await seed(
        redis_url,
        {
            "fresh": {"spend": "5.0", "tier": "2", "@event_time_ms": str(now_ms)},
            "old": {"spend": "5.0", "tier": "2", "@event_time_ms": str(now_ms - 3600_000)},  # 1 h > 60 s
            "ancient": {"spend": "5.0", "tier": "2", "@event_time_ms": str(now_ms - 2 * 86400_000)},
            "legacy": {"spend": "5.0", "tier": "2"},  # no event time: never stale
        },
    )
    async with grpc.aio.insecure_channel(app.address) as channel:
        stub = features_pb2_grpc.FeatureServiceStub(channel)
        response = await stub.GetFeatures(
            features_pb2.GetFeaturesRequest(
                entity_type="user",
                entities=[features_pb2.EntityKey(entity_id=e) for e in ("fresh", "old", "ancient", "legacy")],
                features=["spend", "tier", "amount"],
            )
        )
    got = {
        v.entity_id: ([scalar_from_value(x) for x in v.values], list(v.stale), list(v.missing))
        for v in response.vectors
    }
    assert got["fresh"] == ([5.0, 2.0, 0.0], [], ["amount"])
    assert got["old"] == ([-1.0, 2.0, 0.0], ["spend"], ["amount"])  # tier has its own 1-day limit
    assert got["ancient"] == ([-1.0, 0.0, 0.0], ["spend", "tier"], ["amount"])
    assert got["legacy"] == ([5.0, 2.0, 0.0], [], ["amount"])
    sample = app.metrics.registry.get_sample_value
    assert (
        sample("predmesh_features_defaults_used_total", {"entity_type": "user", "feature": "spend", "reason": "stale"})
        == 2
    )
    assert sample("predmesh_features_age_seconds_count", {"entity_type": "user"}) == 3


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"max_age_s": 0}, "'max_age_s' must be a positive number"),
        ({"features": {"f": {"dtype": "float", "source": "store", "default": 0.0, "max_age_s": "1h"}}}, "max_age_s"),
        (
            {"features": {"f": {"dtype": "float", "source": "request", "default": 0.0, "max_age_s": 5}}},
            "applies to store features only",
        ),
        ({"features": {"f": {"dtype": "float", "source": "store", "default": 0.0, "p5": 9, "p95": 1}}}, "p5 9.0 is"),
        ({"features": {"f": {"dtype": "bool", "source": "store", "default": False, "p5": 0}}}, "float/int"),
        (
            {
                "features": {
                    "c": {"dtype": "category", "source": "store", "default": "a", "categories": ["a"], "common": ["b"]}
                }
            },
            "'common' must be a non-empty list of registered categories",
        ),
    ],
)
def test_freshness_and_reference_keys_are_validated(patch: dict, message: str) -> None:
    group = {"features": {"f": {"dtype": "float", "source": "store", "default": 0.0}}, **patch}
    with pytest.raises(RegistryError, match=message):
        parse_registry({"entities": {"user": group}})
