"""Model pools against REAL servers: ORT worker processes (explicit model control) and a real
tritonserver (--model-control-mode=explicit), driven by the orchestrator's pool.

What is measured comes from the serving process itself (RepositoryIndex of the worker or of
Triton, sampled every ~10 ms while the test runs), not from the pool's own accounting:
- the budget (models and bytes) is never exceeded;
- a version in use (leased by a request, the hot-swap drain refcount) is never evicted;
- N concurrent first requests cause one load;
- an evicted version reloads on demand and answers correctly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from predmesh.local.triton import OrtWorker, TritonServer
from predmesh.models.pool import PooledBackend
from services.inference.app import InferenceApp
from services.inference.backends.kserve_grpc import TRITON_ADMIN_HEADER
from services.inference.triton.layout import write_triton_layout

from .pool_helpers import Sampler, expected_fraud, routing_file, tiny_repo
from .remote_helpers import started_app

NAMES = ["hot", *(f"seg{i}" for i in range(7))]
MAX_MODELS = 3
ADMIN_KEY = "pool-test-admin-key"


async def score(app: InferenceApp, name: str, amount: float = 1.0) -> float:
    assert app.core is not None
    _, (prediction,) = await app.core.infer(name, "1", ["amount"], [[amount]])
    return prediction.score


def the_pool(app: InferenceApp, name: str) -> PooledBackend:
    assert app.core is not None
    backend = app.backend.backend_for(app.core.registry.get(name, "1"))
    assert isinstance(backend, PooledBackend)
    return backend


async def exercise(app: InferenceApp, sampler: Sampler) -> None:
    """The scenario shared by both servers (eager `hot`, budget MAX_MODELS, 7 lazy segments)."""
    assert app.core is not None
    pool = the_pool(app, "seg0")
    assert sampler.last == {"hot:1"}  # only the eager version was loaded at start
    loads = pool.stats.loads

    # N concurrent first requests: one load, every caller answered correctly.
    got = await asyncio.gather(*(score(app, "seg0", 0.5) for _ in range(8)))
    assert got == pytest.approx([expected_fraud(NAMES, "seg0", 0.5)] * 8, abs=1e-6)
    assert pool.stats.loads == loads + 1 and pool.stats.waited >= 8

    # A version leased by an in-flight request is never evicted while others cycle through.
    leased = app.core.registry.get("seg0", "1")
    with app.core.lifecycle.lease([leased]):
        for name in ["seg1", "seg2", "seg3", "seg1"]:
            assert await score(app, name) == pytest.approx(expected_fraud(NAMES, name, 1.0), abs=1e-6)
            assert "seg0:1" in sampler.last and "hot:1" in sampler.last
    evictions = pool.stats.evictions
    assert evictions >= 2

    # Evicted versions reload on demand (seg2 and seg3 were evicted above).
    for name in ["seg2", "seg4", "seg0", "seg3"]:
        assert await score(app, name, 2.0) == pytest.approx(expected_fraud(NAMES, name, 2.0), abs=1e-6)
    assert pool.stats.evictions > evictions
    assert "hot:1" in sampler.last  # eager: never evicted
    assert pool.stats.peak_models <= MAX_MODELS


def check_budget(sampler: Sampler, max_bytes: int) -> None:
    assert sampler.samples > 20, sampler.samples
    assert sampler.max_models <= MAX_MODELS, sampler.max_models
    assert sampler.max_bytes <= max_bytes, (sampler.max_bytes, max_bytes)
    assert len(sampler.seen) >= 5  # the scenario really cycled versions through the budget


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, int], Path]:
    models = tmp_path / "models"
    sizes = tiny_repo(models, NAMES)
    return models, sizes, routing_file(tmp_path / "routing.yaml", ["hot"])


def pool_settings(routing: Path, sizes: dict[str, int]) -> dict[str, Any]:
    return {
        "pool_max_models": MAX_MODELS,
        "pool_max_bytes": MAX_MODELS * max(sizes.values()),
        "routing_path": routing,
        "poll_interval_ms": 0,
        "batch_max_wait_ms": 0.5,
    }


async def test_pool_on_real_ort_worker(repo: tuple[Path, dict[str, int], Path], tmp_path: Path) -> None:
    models, sizes, routing = repo
    worker = OrtWorker(models, env={"PREDMESH_ORTWORKER_MODEL_CONTROL": "explicit"}, workdir=tmp_path / "w")
    worker.start()
    try:
        sampler = Sampler(worker.address, sizes)
        async with sampler.running():
            await asyncio.sleep(0.05)
            assert sampler.last == set()  # explicit control: the worker loads nothing by itself
            app = await started_app(models, ort_workers=worker.address, **pool_settings(routing, sizes))
            try:
                await asyncio.sleep(0.05)
                await exercise(app, sampler)
            finally:
                await app.stop()
        assert sampler.last == set()  # the orchestrator's stop unloaded everything it loaded
        check_budget(sampler, MAX_MODELS * max(sizes.values()))
    finally:
        worker.stop()


@pytest.fixture
def triton(repo: tuple[Path, dict[str, int], Path], tmp_path: Path) -> Iterator[TritonServer]:
    models = repo[0]
    write_triton_layout(models)
    # Model control restricted to the orchestrator's admin key, as the local mesh and the chart run it.
    server = TritonServer(
        models, workdir=tmp_path / "triton", extra_args=["--model-control-mode=explicit"], admin_key=ADMIN_KEY
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_pool_on_real_tritonserver(repo: tuple[Path, dict[str, int], Path], triton: TritonServer) -> None:
    models, sizes, routing = repo
    sampler = Sampler(triton.grpc_address, sizes, metadata=((TRITON_ADMIN_HEADER, ADMIN_KEY),))
    async with sampler.running(period_s=0.02):
        await asyncio.sleep(0.05)
        assert sampler.last == set()
        app = await started_app(
            models,
            triton_target=triton.grpc_address,
            cpu_backend="triton",
            triton_model_control=True,
            triton_admin_key=ADMIN_KEY,  # without it Triton refuses every load (restricted protocol)
            triton_config_name="cpu_local",
            backend_load_timeout_ms=60000,
            pool_load_timeout_ms=60000,
            **pool_settings(routing, sizes),
        )
        try:
            await asyncio.sleep(0.05)
            await exercise(app, sampler)
        finally:
            await app.stop()
    check_budget(sampler, MAX_MODELS * max(sizes.values()))


async def test_hash_placement_loads_each_cold_version_on_its_owner_only(
    repo: tuple[Path, dict[str, int], Path], tmp_path: Path
) -> None:
    from services.inference.core.placement import HashRing

    models, sizes, routing = repo
    workers = [
        OrtWorker(models, env={"PREDMESH_ORTWORKER_MODEL_CONTROL": "explicit"}, workdir=tmp_path / f"w{i}")
        for i in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        targets = [w.address for w in workers]
        settings = pool_settings(routing, sizes) | {"pool_max_models": 8, "pool_max_bytes": 0}
        app = await started_app(models, ort_workers=",".join(targets), worker_placement="hash", **settings)
        try:
            lazy = [n for n in NAMES if n != "hot"]
            for name in lazy:
                assert await score(app, name) == pytest.approx(expected_fraud(NAMES, name, 1.0), abs=1e-6)
            held = []
            for worker in workers:
                sampler = Sampler(worker.address, sizes)
                async with sampler.running():
                    pass
                held.append(sampler.last)
        finally:
            await app.stop()
    finally:
        for worker in workers:
            worker.stop()
    ring = HashRing(targets)
    assert all("hot:1" in h for h in held)  # eager: on every worker
    for name in lazy:
        owner = targets.index(ring.owner(f"{name}:1"))
        assert f"{name}:1" in held[owner] and f"{name}:1" not in held[1 - owner]  # the catalogue once
    assert held[0] - {"hot:1"} and held[1] - {"hot:1"}  # both workers own a share


async def test_worker_local_pool_bounds_each_worker_behind_a_plain_orchestrator(
    repo: tuple[Path, dict[str, int], Path], tmp_path: Path
) -> None:
    """PREDMESH_ORTWORKER_POOL_*: the worker bounds itself (load-balanced Services); the orchestrator has no pool."""
    models, sizes, routing = repo
    env = {
        "PREDMESH_ORTWORKER_POOL_MAX_MODELS": str(MAX_MODELS),
        "PREDMESH_ORTWORKER_ROUTING_PATH": str(routing),
    }
    worker = OrtWorker(models, env=env, workdir=tmp_path / "w")
    worker.start()
    try:
        sampler = Sampler(worker.address, sizes)
        async with sampler.running():
            await asyncio.sleep(0.05)
            assert sampler.last == {"hot:1"}  # eager from the routing table; the rest waits for traffic
            app = await started_app(models, ort_workers=worker.address, poll_interval_ms=0, warmup_runs=0)
            try:
                names = [n for n in NAMES if n != "hot"]
                for name in [*names, *names[:3]]:  # each version cold once, then evicted versions again
                    assert await score(app, name) == pytest.approx(expected_fraud(NAMES, name, 1.0), abs=1e-6)
                got = await asyncio.gather(*(score(app, name, 0.5) for name in names for _ in range(3)))
                assert got == pytest.approx(
                    [expected_fraud(NAMES, name, 0.5) for name in names for _ in range(3)], abs=1e-6
                )
            finally:
                await app.stop()
        assert "hot:1" in sampler.last
        check_budget(sampler, MAX_MODELS * max(sizes.values()))
    finally:
        worker.stop()
