"""One real local mesh (Redis + broker + logger + features + inference + gateway + control plane + Envoy)
per test session, with every service tracing to an in-test OTLP collector and serving /metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from predmesh.cli import build_parser
from predmesh.cli.mesh import up_options
from predmesh.local.mesh import LocalMesh
from predmesh.local.procs import free_port
from predmesh.v1 import prediction_pb2_grpc
from tests.common.otlp_collector import OtlpCollector

TRACED_SERVICES = ("gateway", "features", "inference", "ortworker", "logger", "controlplane")
METERED_SERVICES = ("gateway", "features", "inference", "logger")


@dataclass
class Observability:
    collector: OtlpCollector
    metrics_ports: dict[str, int]


@pytest.fixture(scope="session")
def observability() -> Iterator[Observability]:
    collector = OtlpCollector()
    collector.start()
    try:
        yield Observability(collector, {name: free_port() for name in METERED_SERVICES})
    finally:
        collector.stop()


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory, observability: Observability) -> Iterator[LocalMesh]:
    state = Path(tmp_path_factory.mktemp("mesh"))
    endpoint = f"127.0.0.1:{observability.collector.port}"
    env = {f"PREDMESH_{name.upper()}_OTLP_ENDPOINT": endpoint for name in TRACED_SERVICES}
    env |= {f"PREDMESH_{n.upper()}_METRICS_PORT": str(p) for n, p in observability.metrics_ports.items()}
    env |= {
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans every 100 ms (SDK default: 5 s)
        "PREDMESH_GATEWAY_LOG_FEATURES_SAMPLE": "1.0",
        "PREDMESH_MONITOR_FROM_BEGINNING": "true",  # no record missed before the group is assigned
        "PREDMESH_MONITOR_MIN_EVENTS": "30",
        "PREDMESH_MONITOR_EVALUATE_INTERVAL_S": "0.5",
    }
    # the options of `predmesh up` (server-side batch jobs on, files under <state>/batch)
    options = up_options(build_parser().parse_args(["up", "--state-dir", str(state), "--users", "200"]))
    with LocalMesh(dataclasses.replace(options, extra_env=env)) as running:
        yield running


@pytest.fixture
def stub(mesh: LocalMesh) -> Iterator[prediction_pb2_grpc.PredictionServiceStub]:
    with mesh.gateway_channel() as channel:
        yield prediction_pb2_grpc.PredictionServiceStub(channel)
