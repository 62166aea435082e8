"""Fixtures: in-process backends and control plane, a real Envoy configured over ADS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from predmesh.local.envoy import EnvoyProcess
from predmesh.local.procs import free_port
from services.controlplane.app import ControlPlaneApp
from services.controlplane.core.config import Cluster, HealthCheck, MeshConfig, default_config
from services.controlplane.settings import ControlPlaneSettings
from tests.controlplane.backend import Backend


async def eventually(check: Callable[[], object], within_s: float = 10.0, what: str = "condition") -> None:
    """Await until `check()` (blocking calls run in a thread) is truthy."""
    deadline = time.monotonic() + within_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await asyncio.to_thread(check)
            if last:
                return
        except Exception as err:  # keep trying until the deadline
            last = err
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached in {within_s}s (last: {last!r})")


@dataclass
class Mesh:
    app: ControlPlaneApp
    envoy: EnvoyProcess
    listener_port: int
    backends: list[Backend]

    @property
    def edge(self) -> str:
        return f"127.0.0.1:{self.listener_port}"


def mesh_config_for(backends: list[Backend], listener_port: int) -> MeshConfig:
    config = default_config([b.endpoint for b in backends], listener_port)
    gateway = Cluster(endpoints=tuple(b.endpoint for b in backends), health_check=HealthCheck(interval_ms=300))
    return config.model_copy(update={"clusters": {"gateway": gateway}})


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = [await Backend("a").start(), await Backend("b").start()]
    try:
        yield started
    finally:
        for backend in started:
            await backend.stop()


@pytest.fixture
async def mesh(backends: list[Backend], tmp_path: Path) -> AsyncIterator[Mesh]:
    listener_port = free_port()
    settings = ControlPlaneSettings(port=0, admin_port=0, grace_s=0.1)
    app = ControlPlaneApp(settings, config=mesh_config_for(backends, listener_port))
    await app.start()
    envoy = EnvoyProcess(app.address, workdir=tmp_path / "envoy")
    try:
        await asyncio.to_thread(envoy.start)
        yield Mesh(app, envoy, listener_port, backends)
    finally:
        await asyncio.to_thread(envoy.stop)
        await app.stop()
