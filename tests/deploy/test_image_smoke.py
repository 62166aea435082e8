"""The image smoke test reads the chart the way a kubelet would (no buildah needed here).

scripts/image_smoke.py starts each service with the rendered container's command, env and
volumes; these tests pin that translation so a chart change (new env, new volume, a moved
entrypoint) reaches the smoke test instead of silently diverging from it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from predmesh.demo import FEATURE_REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def _smoke_module() -> Any:
    spec = importlib.util.spec_from_file_location("predmesh_image_smoke", ROOT / "scripts" / "image_smoke.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


smoke = _smoke_module()
REPO = "localhost/predmesh"


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory, helm: Path) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("smoke")
    values = {
        "image": {"repository": REPO, "tag": "0.1.0"},
        "redis": {"url": "redis://127.0.0.1:6390/0"},
        "kafka": {"bootstrapServers": "127.0.0.1:9099"},
        "metrics": {"enabled": False},
        "ortWorker": {"enabled": True},
        "monitor": {"enabled": False},
        "features": {"registry": yaml.safe_load(FEATURE_REGISTRY.read_text())},
        "gateway": {
            "targets": {"features": "127.0.0.1:1", "inference": "127.0.0.1:2", "logger": "127.0.0.1:3"},
            "apiKeys": {"k": ["fraud"]},
        },
    }
    return dict(smoke.pod_containers(smoke.render(values, workdir), REPO, workdir))


def test_every_smoke_component_is_rendered_with_its_env_prefix(pods: dict[str, Any]) -> None:
    assert set(smoke.ORDER) <= set(pods)
    assert pods["gateway"].prefix == "PREDMESH_GATEWAY_"
    assert pods["ort-worker"].prefix == "PREDMESH_ORTWORKER_"
    for name in smoke.ORDER:
        assert pods[name].command[:2] == ["python", "-m"], pods[name].command


def test_volumes_are_materialized_like_the_pod_would_see_them(pods: dict[str, Any]) -> None:
    gateway = pods["gateway"]
    routing_path = Path(gateway.env["PREDMESH_GATEWAY_ROUTING_PATH"])
    host_dir = gateway.mounts[str(routing_path.parent)]
    assert "fraud" in (host_dir / routing_path.name).read_text()
    assert str(routing_path.parent) in gateway.read_only
    assert "/tmp" in gateway.mounts and "/tmp" not in gateway.read_only
    logger = pods["logger"]
    journal = logger.env["PREDMESH_LOGGER_JOURNAL_DIR"]
    assert journal in logger.mounts and journal not in logger.read_only
    if os.geteuid() == 0:  # the smoke test runs as root and hands the volume to the service user
        assert logger.mounts[journal].stat().st_uid == 10001
    features = pods["features"]
    registry = Path(features.env["PREDMESH_FEATURES_REGISTRY_PATH"])
    assert (features.mounts[str(registry.parent)] / registry.name).read_text().strip()
    # The API keys Secret reaches the gateway as a mounted, read-only file holding only digests.
    keys_path = Path(gateway.env["PREDMESH_GATEWAY_API_KEYS_PATH"])
    keys = (gateway.mounts[str(keys_path.parent)] / keys_path.name).read_text()
    assert f"sha256:{hashlib.sha256(b'k').hexdigest()}" in keys
    assert '"k"' not in keys
    assert str(keys_path.parent) in gateway.read_only


def test_loopback_overrides_only_addresses(pods: dict[str, Any]) -> None:
    ports = {name: 40000 + i for i, name in enumerate(smoke.ORDER)}
    env = smoke.loopback_env(pods["inference"], 4242, ports, 8080)
    assert env["PREDMESH_INFERENCE_HOST"] == "127.0.0.1" and env["PREDMESH_INFERENCE_PORT"] == "4242"
    assert env["PREDMESH_INFERENCE_ORT_WORKERS"] == f"127.0.0.1:{ports['ort-worker']}"
    assert env["PREDMESH_INFERENCE_MODEL_REPOSITORY"] == pods["inference"].env["PREDMESH_INFERENCE_MODEL_REPOSITORY"]
    cp = smoke.loopback_env(pods["controlplane"], 4243, ports, 8080)
    assert "PREDMESH_CONTROLPLANE_CONFIG_PATH" not in cp
    assert cp["PREDMESH_CONTROLPLANE_GATEWAY_ENDPOINTS"] == f"127.0.0.1:{ports['gateway']}"
    assert cp["PREDMESH_CONTROLPLANE_LISTENER_PORT"] == "8080"


def test_service_command_runs_the_rendered_command_on_a_read_only_root(pods: dict[str, Any], tmp_path: Path) -> None:
    config = {"Env": ["PATH=/opt/predmesh/bin:/usr/bin", "PYTHONPATH=/app"], "WorkingDir": "/app"}
    svc = smoke.ImageService(pods["gateway"], Path("/var/lib/ctr/merged"), config, 4000, {"A": "1"}, tmp_path)
    cmd = svc.command()
    assert cmd[:2] == ["unshare", "--mount"]
    script = cmd[-1]
    assert "mount -o remount,bind,ro /var/lib/ctr/merged" in script
    assert "mount -o remount,bind,ro /var/lib/ctr/merged/etc/predmesh/routing" in script
    assert script.splitlines()[-1].startswith("exec chroot --userspec=10001:10001 /var/lib/ctr/merged /usr/bin/env -i")
    assert script.splitlines()[-1].endswith("A=1 python -m services.gateway.app")
