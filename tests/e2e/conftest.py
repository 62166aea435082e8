"""One real local mesh (Redis + features + inference + gateway processes) per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from predmesh.local.mesh import LocalMesh, MeshOptions
from predmesh.v1 import prediction_pb2_grpc


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    state = Path(tmp_path_factory.mktemp("mesh"))
    with LocalMesh(MeshOptions(state_dir=state, demo_users=200)) as running:
        yield running


@pytest.fixture
def stub(mesh: LocalMesh) -> Iterator[prediction_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(mesh.gateway_address) as channel:
        yield prediction_pb2_grpc.PredictionServiceStub(channel)
