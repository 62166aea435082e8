"""The chart's env vars and config files match what the services actually read.

Every PREDMESH_<SERVICE>_* variable rendered (for every value set) must be a field of that
service's pydantic-settings class, except the names in PENDING, which the chart already
renders for features the services do not have yet. The settings classes are imported at module
level: a broken settings module fails these tests (it is never a skip).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml
from pydantic_settings import BaseSettings

from services.controlplane.core.config import MeshConfig
from services.controlplane.settings import ControlPlaneSettings
from services.features.settings import FeaturesSettings
from services.gateway.core.routing import parse_routing
from services.gateway.settings import GatewaySettings
from services.inference.settings import InferenceSettings
from services.ingest.settings import IngestSettings
from services.logger.settings import LoggerSettings
from services.monitor.settings import MonitorSettings
from services.ortworker.settings import OrtWorkerSettings
from tests.helm.chart import NAMESPACE, RELEASE, VALUE_SETS, Manifest, env_of, one

Render = Callable[[str], list[Manifest]]
SETTINGS: dict[str, type[BaseSettings]] = {  # env prefix -> settings class
    "PREDMESH_GATEWAY_": GatewaySettings,
    "PREDMESH_FEATURES_": FeaturesSettings,
    "PREDMESH_INFERENCE_": InferenceSettings,
    "PREDMESH_LOGGER_": LoggerSettings,
    "PREDMESH_CONTROLPLANE_": ControlPlaneSettings,
    "PREDMESH_ORTWORKER_": OrtWorkerSettings,
    "PREDMESH_MONITOR_": MonitorSettings,
    "PREDMESH_INGEST_": IngestSettings,
}
# Rendered ahead of the services (see the chart README); remove a name once its field exists.
PENDING: set[str] = set()


def _settings_env_names(prefix: str) -> set[str]:
    cls = SETTINGS[prefix]
    assert cls.model_config.get("env_prefix") == prefix
    return {prefix + name.upper() for name in cls.model_fields}


@pytest.mark.parametrize("prefix", sorted(SETTINGS))
def test_rendered_env_vars_are_settings_fields(render: Render, prefix: str) -> None:
    known = _settings_env_names(prefix)
    assert not PENDING & known, f"now implemented, drop from PENDING: {sorted(PENDING & known)}"
    rendered: set[str] = set()
    for name in VALUE_SETS:
        for doc in render(name):
            if doc["kind"] in ("Deployment", "StatefulSet"):
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    rendered |= {n for n in env_of(container) if n.startswith(prefix)}
    assert rendered, f"no {prefix}* variables rendered"
    unknown = rendered - known - PENDING
    assert not unknown, f"rendered but not read by the service: {sorted(unknown)}"


def test_controlplane_mesh_config_discovers_gateway_and_matches_envoy(render: Render) -> None:
    docs = render("default")
    mesh = yaml.safe_load(one(docs, "ConfigMap", "controlplane-mesh")["data"]["mesh.yaml"])
    assert mesh["clusters"]["gateway"]["kubernetes"] == {
        "namespace": NAMESPACE,
        "service": f"{RELEASE}-predmesh-gateway",
        "port_name": "grpc",
    }
    assert mesh["listener_port"] == 8080
    cp = one(docs, "Deployment", "controlplane")
    env = env_of(cp["spec"]["template"]["spec"]["containers"][0])
    envoy = one(docs, "Deployment", "envoy")["spec"]["template"]["spec"]["containers"][0]
    args = envoy["args"]
    assert args[args.index("--service-cluster") + 1] == env["PREDMESH_CONTROLPLANE_NODE_CLUSTER"]
    bootstrap = yaml.safe_load(one(docs, "ConfigMap", "envoy-bootstrap")["data"]["bootstrap.yaml"])
    assert bootstrap["node"]["cluster"] == env["PREDMESH_CONTROLPLANE_NODE_CLUSTER"]
    assert envoy["ports"][0]["containerPort"] == mesh["listener_port"]
    # The mesh file is polled by the control plane: live, so no checksum annotation.
    annotations = cp["spec"]["template"]["metadata"].get("annotations", {})
    assert not [key for key in annotations if key.startswith("checksum/")]
    parsed = MeshConfig.parse(mesh)
    assert parsed.clusters["gateway"].kubernetes is not None


@pytest.mark.parametrize("value_set", ["default", "canary"])
def test_routing_configmap_is_accepted_by_the_gateway(render: Render, value_set: str) -> None:
    data = yaml.safe_load(one(render(value_set), "ConfigMap", "routing")["data"]["routing.yaml"])
    table = parse_routing(data, revision="helm")
    assert table.get("fraud").versions
