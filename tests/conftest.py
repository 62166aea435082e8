"""Shared fixtures (real components on loopback ephemeral ports, always torn down) and test markers.

Every test gets exactly one of three markers, assigned here at collection (so tests added
later are marked too; an explicit marker on a test or module wins):

- `e2e`: under tests/e2e/ (the whole local mesh);
- `integration`: uses a real component: a fixture from `REAL_COMPONENT_FIXTURES` (Redis,
  tansu, Envoy, the helm binary, trained demo models...), or its module drives processes
  (a `predmesh.local` ManagedProcess class or `subprocess`);
- `unit`: everything else (in process, fakes at most): `./dev test -m unit` runs in seconds.
"""

from __future__ import annotations

import subprocess as _subprocess
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from predmesh.local.kafka import TansuBroker
from predmesh.local.procs import ManagedProcess, RedisServer
from predmesh.local.rediscluster import RedisCluster
from tests.demo.support import DemoModels, train_demo_models

MARKERS = {
    "unit": "in-process test: no real component, no subprocess (fast: `./dev test -m unit`)",
    "integration": "starts or talks to a real component (Redis, tansu, Envoy, tritonserver, helm, processes)",
    "e2e": "runs against the whole local mesh (tests/e2e)",
}
REAL_COMPONENT_FIXTURES = frozenset(
    {
        "redis_server",
        "redis_url",
        "redis_cluster",
        "redis_cluster_url",
        "tansu",
        "own_tansu",
        "run_logger",
        "start_app",
        "backends",
        "mesh",
        "observability",
        "helm",
        "helm_run",
        "render",
        "demo_models",
        "demo_app",
    }
)
TESTS_DIR = Path(__file__).resolve().parent


def _drives_processes(module: types.ModuleType | None) -> bool:
    for value in vars(module).values() if module is not None else ():
        if value is _subprocess:
            return True
        if isinstance(value, type) and issubclass(value, ManagedProcess):
            return True
    return False


def marker_for(path: Path, fixturenames: Iterable[str], module: types.ModuleType | None) -> str:
    """The marker a test gets from where it lives and what it uses (see the module docstring)."""
    try:
        parts = path.resolve().relative_to(TESTS_DIR).parts
    except ValueError:
        parts = ()
    if parts and parts[0] == "e2e":
        return "e2e"
    if REAL_COMPONENT_FIXTURES.intersection(fixturenames) or _drives_processes(module):
        return "integration"
    return "unit"


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(name) for name in MARKERS):
            continue
        module = getattr(item, "module", None)
        item.add_marker(getattr(pytest.mark, marker_for(item.path, getattr(item, "fixturenames", ()), module)))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the test session."""
    server = RedisServer(workdir=Path(tmp_path_factory.mktemp("redis")))
    with server:  # start() now, stop() at the end of the session
        yield server


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One real tansu broker for the test session (tests use their own topic and group names)."""
    broker = TansuBroker(workdir=Path(tmp_path_factory.mktemp("tansu")))
    with broker:  # start() now, stop() at the end of the session
        yield broker


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One embedded ClickHouse analytics store (chdb, the sink's schema created) per test module:
    chdb allows one path per process at a time."""
    from services.sink.backends.chdb_store import ChdbStore
    from services.sink.core.schema import create_statements

    s = ChdbStore(tmp_path_factory.mktemp("chdb"), "predmesh")
    for statement in create_statements("predmesh"):
        s.command(statement)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> DemoModels:
    """The demo models, trained once per session into a temporary model repository (~8 s)."""
    return train_demo_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of a flushed database on the session's real redis-server."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    try:
        yield redis_server.url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One real Redis Cluster (3 masters + 3 replicas on loopback) for the test session; a test
    that kills nodes starts its own instead."""
    with RedisCluster(Path(tmp_path_factory.mktemp("redis-cluster"))) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> Iterator[str]:
    """Seed URL (`redis+cluster://`) of the session's cluster, every master flushed before and after."""

    def flush() -> None:
        for master in redis_cluster.masters_now():
            client = master.client()
            try:
                client.flushall()
            finally:
                client.close()

    flush()
    try:
        yield redis_cluster.url
    finally:
        flush()
