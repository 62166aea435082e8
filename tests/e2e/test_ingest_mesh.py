"""The local mesh with streaming ingestion (`MeshOptions.with_ingest`): `predmesh features push` -> broker ->
ingest service -> Redis -> the features service serves the new value; an event older than the demo load is ignored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from predmesh.cli import main
from predmesh.common.values import scalar_from_value
from predmesh.local.mesh import LocalMesh, MeshOptions
from predmesh.v1 import features_pb2, features_pb2_grpc


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    options = MeshOptions(
        state_dir=Path(tmp_path_factory.mktemp("ingest-mesh")),
        demo_users=20,
        with_monitor=False,
        with_edge=False,
        with_triton=False,
        ort_workers=0,
        with_ingest=True,
        supervise=False,
        extra_env={"PREDMESH_FEATURES_CACHE_TTL_MS": "0"},
    )
    with LocalMesh(options) as running:
        yield running


def _txn_count(mesh: LocalMesh, entity_id: str) -> object:
    assert mesh.features is not None
    with mesh.internal_channel(mesh.features.address) as channel:
        stub = features_pb2_grpc.FeatureServiceStub(channel)
        response = stub.GetFeatures(
            features_pb2.GetFeaturesRequest(
                entity_type="user", entities=[features_pb2.EntityKey(entity_id=entity_id)], features=["txn_count_7d"]
            ),
            timeout=5,
        )
    return scalar_from_value(response.vectors[0].values[0])


def test_pushed_events_reach_the_served_features(mesh: LocalMesh) -> None:
    assert mesh.ingest is not None and "feature ingestion (topic feature-events)" in mesh.describe()
    push = ["features", "push", "--bootstrap-servers", mesh.bootstrap_servers, "--entity-id"]
    assert main([*push, "u00003", "txn_count_7d=77"]) == 0  # event time now: newer than the demo load
    _wait_for(mesh, "u00003", 77.0)
    # An event older than what is stored is ignored; the sentinel (sent after it) proves it was processed.
    assert main([*push, "u00003", "--event-time-ms", "1000", "txn_count_7d=11"]) == 0
    assert main([*push, "u00004", "txn_count_7d=44"]) == 0
    _wait_for(mesh, "u00004", 44.0)
    assert _txn_count(mesh, "u00003") == 77.0


def _wait_for(mesh: LocalMesh, entity_id: str, value: float) -> None:
    deadline = time.monotonic() + 30
    while _txn_count(mesh, entity_id) != value:
        assert time.monotonic() < deadline, f"{entity_id}: the pushed value never reached the features service"
        time.sleep(0.1)
