"""PooledBackend on a small fake inner backend: budget, eager pinning, LRU, in-use safety,
one load for concurrent first requests, waiting within the deadline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from predmesh.common.deadline import Deadline
from predmesh.common.errors import DeadlineExceeded, ResourceExhausted
from predmesh.models.errors import ModelLoadError
from predmesh.models.metrics import PoolMetrics
from predmesh.models.pool import PoolConfig, PooledBackend, State
from predmesh.models.registry import ModelVersion
from predmesh.models.spec import parse_spec

from ...models.builders import regressor_spec


class FakeBackend:
    """Records loads/unloads; tracks the peak number held; loads wait on `gate` when set."""

    name = "fake"

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.peak = 0
        self.loads: list[str] = []
        self.unloads: list[str] = []
        self.gate: asyncio.Event | None = None
        self.running: dict[str, int] = {}
        self.release: asyncio.Event | None = None  # infer blocks on it when set

    async def load(self, mv: ModelVersion) -> None:
        self.loads.append(str(mv))
        if self.gate is not None:
            await self.gate.wait()
        self.held.add(str(mv))
        self.peak = max(self.peak, len(self.held))

    async def infer(self, mv: ModelVersion, batch: np.ndarray, deadline: Deadline | None = None) -> np.ndarray:
        assert str(mv) in self.held, f"{mv} run while not loaded"
        self.running[str(mv)] = self.running.get(str(mv), 0) + 1
        try:
            if self.release is not None:
                await self.release.wait()
            assert str(mv) in self.held, f"{mv} unloaded while running"
            return batch[:, :1]
        finally:
            self.running[str(mv)] -= 1

    async def unload(self, mv: ModelVersion) -> None:
        if str(mv) in self.held:
            self.unloads.append(str(mv))
            self.held.discard(str(mv))

    async def ready(self, mv: ModelVersion) -> bool:
        return str(mv) in self.held

    async def close(self) -> None:
        self.held.clear()


def mv(name: str, version: str = "1") -> ModelVersion:
    return ModelVersion(parse_spec(regressor_spec(name, version), f"{name}.yaml"), Path(f"/nowhere/{name}/{version}"))


BATCH = np.zeros((1, 1), dtype=np.float32)


def pool(fake: FakeBackend, eager: set[str] = frozenset(), **cfg: float) -> PooledBackend:  # type: ignore[assignment]
    config = PoolConfig(**{"max_models": 2, "load_timeout_s": 5.0, **cfg})  # type: ignore[arg-type]
    return PooledBackend(fake, config, lambda m: str(m) in eager, size_of=lambda m: 100)


async def test_eager_loaded_at_registration_lazy_on_first_use_and_lru_eviction() -> None:
    fake = FakeBackend()
    p = pool(fake, eager={"e:1"}, max_models=3)
    versions = [mv("e"), *(mv(f"m{i}") for i in range(5))]
    for item in versions:
        await p.load(item)
    assert fake.loads == ["e:1"]  # only the eager one
    for name in ["m0", "m1", "m0", "m2", "m3", "m0", "m4"]:
        await p.infer(mv(name), BATCH)
        assert len(fake.held) <= 3
    # two lazy slots; LRU: m1 (m0 was used after it), then m0, m2 (reloading m0), m3
    assert fake.unloads == ["m1:1", "m0:1", "m2:1", "m3:1"]
    assert "e:1" in fake.held and p.state(mv("e")) is State.LOADED
    assert fake.peak == 3 and p.stats.peak_models == 3 and p.stats.evictions == 4
    await p.infer(mv("m1"), BATCH)  # an evicted version reloads on demand
    assert fake.loads.count("m1:1") == 2


async def test_byte_budget_counts_sizes() -> None:
    fake = FakeBackend()
    p = PooledBackend(fake, PoolConfig(max_bytes=250), lambda m: False, size_of=lambda m: 100)
    for i in range(4):
        await p.load(mv(f"m{i}"))
        await p.infer(mv(f"m{i}"), BATCH)
        assert p.stats.loaded_bytes <= 250 and len(fake.held) <= 2
    assert p.stats.peak_bytes == 200


async def test_concurrent_first_requests_cause_one_load() -> None:
    fake = FakeBackend()
    fake.gate = asyncio.Event()
    p = pool(fake)
    await p.load(mv("a"))
    calls = [asyncio.create_task(p.infer(mv("a"), BATCH)) for _ in range(20)]
    await asyncio.sleep(0.01)
    fake.gate.set()
    await asyncio.gather(*calls)
    assert fake.loads == ["a:1"] and p.stats.loads == 1 and p.stats.waited == 20


async def test_in_use_version_is_never_evicted_and_load_waits_for_room() -> None:
    fake = FakeBackend()
    p = pool(fake, max_models=1)
    for name in "ab":
        await p.load(mv(name))
    fake.release = asyncio.Event()
    running = asyncio.create_task(p.infer(mv("a"), BATCH))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(p.infer(mv("b"), BATCH))
    await asyncio.sleep(0.05)
    assert not waiting.done() and fake.held == {"a:1"}  # a is in use: b waits
    fake.release.set()
    await asyncio.gather(running, waiting)
    assert fake.unloads == ["a:1"] and fake.held == {"b:1"} and fake.peak == 1


async def test_external_lease_blocks_eviction_until_deadline() -> None:
    fake = FakeBackend()
    leased = {"a:1"}
    p = PooledBackend(
        fake,
        PoolConfig(max_models=1, load_timeout_s=5.0),
        lambda m: False,
        size_of=lambda m: 1,
        in_use=lambda m: int(str(m) in leased),
    )
    for name in "ab":
        await p.load(mv(name))
    await p.infer(mv("a"), BATCH)
    with pytest.raises(DeadlineExceeded):
        await p.infer(mv("b"), BATCH, Deadline.after(0.1))  # the request gets a dependency error: fallback
    assert fake.held == {"a:1"}
    leased.clear()  # the lease ends: the load still in progress now makes room
    await p.infer(mv("b"), BATCH, Deadline.after(2.0))
    assert fake.held == {"b:1"}


async def test_load_gives_up_when_room_never_frees() -> None:
    fake = FakeBackend()
    p = PooledBackend(
        fake, PoolConfig(max_models=1, load_timeout_s=0.05), lambda m: str(m) == "a:1", size_of=lambda m: 1
    )
    await p.load(mv("a"))
    await p.load(mv("b"))
    with pytest.raises(ResourceExhausted):
        await p.infer(mv("b"), BATCH)
    assert fake.held == {"a:1"}


async def test_eager_set_over_budget_fails_its_load() -> None:
    fake = FakeBackend()
    p = pool(fake, eager={"a:1", "b:1", "c:1"})
    await p.load(mv("a"))
    await p.load(mv("b"))
    with pytest.raises(ModelLoadError, match="budget"):
        await p.load(mv("c"))
    assert fake.held == {"a:1", "b:1"}


async def test_unload_frees_and_close_closes_inner() -> None:
    fake = FakeBackend()
    p = pool(fake)
    await p.load(mv("a"))
    await p.infer(mv("a"), BATCH)
    await p.unload(mv("a"))
    assert fake.held == set() and p.stats.loaded_models == 0
    await p.close()


async def test_metrics_count_loads_evictions_waits_and_bytes() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    fake = FakeBackend()
    p = PooledBackend(
        fake, PoolConfig(max_models=1), lambda m: False, size_of=lambda m: 100, metrics=PoolMetrics(registry)
    )
    for name in "ab":
        await p.load(mv(name))
    await p.infer(mv("a"), BATCH)
    await p.infer(mv("b"), BATCH)

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, {"backend": "fake"})

    assert value("predmesh_model_pool_loads_total") == 2
    assert value("predmesh_model_pool_evictions_total") == 1
    assert value("predmesh_model_pool_waited_requests_total") == 2
    assert value("predmesh_model_pool_loaded_bytes") == 100 and value("predmesh_model_pool_loaded_models") == 1
    assert value("predmesh_model_pool_load_seconds_count") == 2
