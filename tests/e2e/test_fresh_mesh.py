"""Issue #19 through the whole local mesh (gateway -> features -> Redis, orchestrator, broker, ingest service):

- fraud:3 reads two feature groups (its user's and its merchant's, `entities: {merchant: id}`) in one
  Redis round trip: the mesh's Redis counts exactly one HGETALL per entity and nothing else;
- the prediction cache (`MeshOptions.with_cache`, the routing's `cache` policy) is hit, then invalidated by
  an event for that entity pushed through the real broker and ingest service, then by a routing change;
  the same with the features, the ingest service and the cache's shared level on a local Redis Cluster.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from predmesh.cli import main
from predmesh.common.values import scalar_to_value
from predmesh.demo import synth
from predmesh.local.mesh import LocalMesh, MeshOptions
from predmesh.v1 import prediction_pb2, prediction_pb2_grpc
from tests.demo.support import DemoModels

ROUTING = {"models": {"fraud": {"versions": [{"version": "3", "weight": 100}]}}}
CACHED = {"models": {"fraud": {"versions": [{"version": "3", "weight": 100}], "cache": {"ttl_s": 600}}}}
# Reads a store does to serve features; anything else counted is the mesh's own background traffic.
READS = {"hgetall", "hmget", "hget", "get", "mget", "evalsha", "eval"}


def _options(state: Path, **extra: Any) -> MeshOptions:
    routing = state / "routing.yaml"
    routing.write_text(yaml.safe_dump(ROUTING))
    return MeshOptions(
        state_dir=state,
        demo_users=50,
        routing_template=routing,
        with_monitor=False,
        with_edge=False,
        with_triton=False,
        ort_workers=0,
        with_ingest=True,
        with_cache=True,
        supervise=False,
        extra_env={
            "PREDMESH_FEATURES_CACHE_TTL_MS": "0",
            "PREDMESH_GATEWAY_ROUTING_POLL_MS": "50",
            # No fallback chain here: on a loaded CI box a GetFeatures past the default budget
            # would fail the call; these tests are about cache and ingest semantics, not latency.
            "PREDMESH_GATEWAY_FEATURES_TIMEOUT_MS": "3000",
            "PREDMESH_GATEWAY_INFERENCE_TIMEOUT_MS": "3000",
        },
        **extra,
    )


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, demo_models: DemoModels) -> Iterator[LocalMesh]:
    state = Path(tmp_path_factory.mktemp("fresh-mesh"))
    shutil.copytree(demo_models.repo, state / "models")  # trained once per session
    with LocalMesh(_options(state)) as running:
        yield running


@contextmanager
def _predictor(mesh: LocalMesh) -> Iterator[Callable[..., Any]]:
    with mesh.gateway_channel() as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)

        def call(entity: str, merchant: str, amount: float = 120.0) -> Any:
            request = prediction_pb2.PredictRequest(
                model="fraud",
                entity_id=entity,
                entities={"merchant": merchant},
                context={"amount": scalar_to_value(amount), "hour_of_day": scalar_to_value(3)},
            )
            return stub.Predict(request, timeout=10)

        yield call


@pytest.fixture(scope="module")
def predict(mesh: LocalMesh) -> Iterator[Callable[..., Any]]:
    with _predictor(mesh) as call:
        yield call


def _reads(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return {k: v for k, v in calls.items() if k in READS}


def test_a_two_group_model_reads_both_groups_in_one_round_trip(mesh: LocalMesh, predict: Callable[..., Any]) -> None:
    shops = synth.merchants()
    risky, safe = shops["risk_score"].idxmax(), shops["risk_score"].idxmin()
    client = redis.Redis.from_url(mesh.redis_url)
    try:
        client.config_resetstat()
        high = predict("u00001", risky)
        reads = _reads(client)
    finally:
        client.close()
    # One user and one merchant: two HGETALLs (one pipelined round trip), no other read.
    assert reads == {"hgetall": 2}
    assert (high.model_version, high.degraded, list(high.missing_features)) == ("3", False, [])
    assert not high.cached
    low = predict("u00001", safe)
    # The merchant's stored features reach the model: same user and context, riskier merchant, higher score.
    assert high.prediction.score > low.prediction.score


def test_cache_hit_then_ingest_invalidation_then_routing_change(mesh: LocalMesh, predict: Callable[..., Any]) -> None:
    _cache_scenario(mesh, predict)


def test_the_same_on_a_redis_cluster(tmp_path: Path, demo_models: DemoModels) -> None:
    """Features, the ingestion service and the gateway's shared cache level on one local Redis
    Cluster (`redis_cluster=True`): the ingest's cluster writer bumps generations and publishes
    there, and the gateway's cluster level follows them."""
    shutil.copytree(demo_models.repo, tmp_path / "models")
    with LocalMesh(_options(tmp_path, redis_cluster=True)) as cluster_mesh, _predictor(cluster_mesh) as predict:
        assert cluster_mesh.redis_url.startswith("redis+cluster://")
        _cache_scenario(cluster_mesh, predict)


def _cache_scenario(mesh: LocalMesh, predict: Callable[..., Any]) -> None:
    _write_routing(mesh, CACHED)
    _until(lambda: predict("u00002", "m0001").cached, "the cache policy never applied")
    first = predict("u00002", "m0001")
    assert first.cached and first.model_version == "3"
    assert predict("u00003", "m0001", amount=7.0).cached is False  # another entity and context: a miss

    # An event for u00002 through `predmesh features push` -> broker -> ingest service -> Redis (+ invalidation).
    push = ["features", "push", "--bootstrap-servers", mesh.bootstrap_servers]
    assert main([*push, "--entity-id", "u00002", "chargeback_rate_90d=0.9"]) == 0
    fresh = _until(lambda: _miss(predict("u00002", "m0001")), "the ingested event never invalidated the entry")
    assert fresh.prediction.score != first.prediction.score  # scored again, on the pushed value
    assert predict("u00002", "m0001").cached  # and cached again
    assert predict("u00003", "m0001", amount=7.0).cached  # u00003 was not written: still cached

    # An event for the merchant invalidates every entry that read it.
    assert main([*push, "--entity-type", "merchant", "--entity-id", "m0001", "risk_score=0.5"]) == 0
    _until(lambda: _miss(predict("u00003", "m0001", amount=7.0)), "the merchant's event never invalidated")

    assert not predict("u00002", "m0001").cached  # it had read m0001 too
    # A routing change (a new revision, same policy) invalidates everything.
    assert predict("u00002", "m0001").cached
    _write_routing(mesh, CACHED, comment="# revision 2\n")
    _until(lambda: _miss(predict("u00002", "m0001")), "the routing change never invalidated the entry")
    assert predict("u00002", "m0001").cached


def _miss(response: Any) -> Any:
    return None if response.cached else response


def _write_routing(mesh: LocalMesh, table: dict[str, Any], comment: str = "") -> None:
    tmp = mesh.routing_path.with_suffix(".tmp")
    tmp.write_text(comment + yaml.safe_dump(table))
    tmp.replace(mesh.routing_path)


def _until(check: Callable[[], Any], message: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, message
        time.sleep(0.05)
