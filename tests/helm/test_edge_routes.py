"""The chart's edge routes are the control plane's public routes: PredictionService, reflection, health."""

from __future__ import annotations

from collections.abc import Callable

import yaml

from services.controlplane.core.config import MeshConfig, public_routes
from tests.helm.chart import Manifest, one

Render = Callable[[str], list[Manifest]]


def test_the_chart_routes_reflection_and_health_through_the_edge(render: Render) -> None:
    mesh = yaml.safe_load(one(render("default"), "ConfigMap", "controlplane-mesh")["data"]["mesh.yaml"])
    routes = MeshConfig.parse(mesh).routes
    assert [(r.name, r.prefix, r.cluster, r.retry) for r in routes] == [
        (r.name, r.prefix, r.cluster, r.retry) for r in public_routes("gateway")
    ]
