"""`python -m services.features.app` runs the service from env settings and stops on SIGTERM."""

from __future__ import annotations

import grpc
import pytest
from pydantic import ValidationError

from predmesh.demo import FEATURE_REGISTRY
from predmesh.local.procs import PythonService, free_port
from predmesh.v1 import features_pb2, features_pb2_grpc
from services.features.settings import FeaturesSettings


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDMESH_FEATURES_REDIS_TIMEOUT_MS", "25")
    monkeypatch.setenv("PREDMESH_FEATURES_CACHE_TTL_MS", "0")
    monkeypatch.setenv("PREDMESH_FEATURES_MAX_ENTITIES", "16")
    monkeypatch.setenv("PREDMESH_FEATURES_REGISTRY_PATH", "/etc/predmesh/features/registry.yaml")
    settings = FeaturesSettings()
    assert str(settings.registry_path) == "/etc/predmesh/features/registry.yaml"
    assert (settings.redis_timeout_ms, settings.cache_ttl_ms, settings.max_entities) == (25.0, 0.0, 16)
    for name, field in FeaturesSettings.model_fields.items():
        assert field.description, name


def test_registry_path_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """A features pod without a registry must refuse to start, not quietly serve the demo registry."""
    monkeypatch.delenv("PREDMESH_FEATURES_REGISTRY_PATH", raising=False)
    with pytest.raises(ValidationError, match="registry_path"):
        FeaturesSettings()


def test_module_entry_point_refuses_to_start_without_registry(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"PREDMESH_FEATURES_PORT": str(free_port()), "PREDMESH_FEATURES_REDIS_URL": redis_url}
    service = PythonService("features", "services.features.app", free_port(), env, workdir=tmp_path)
    with pytest.raises(RuntimeError, match="exited"):
        service.start()
    service.stop()
    assert "registry_path" in service.log_tail()


def test_module_entry_point_serves(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {
        "PREDMESH_FEATURES_PORT": str(port),
        "PREDMESH_FEATURES_REDIS_URL": redis_url,
        "PREDMESH_FEATURES_GRACE_S": "0.5",
        "PREDMESH_FEATURES_REGISTRY_PATH": str(FEATURE_REGISTRY),
    }
    service = PythonService("features", "services.features.app", port, env, workdir=tmp_path)
    service.start()
    try:
        with grpc.insecure_channel(service.address) as channel:
            stub = features_pb2_grpc.FeatureServiceStub(channel)
            info = stub.DescribeGroup(features_pb2.DescribeGroupRequest(entity_type="user"), timeout=5)
            assert info.entity_type == "user" and len(info.features) == 9
    finally:
        service.stop()
    assert "features service stopped" in service.log_tail()
