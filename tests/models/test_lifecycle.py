"""ModelLifecycle: atomic snapshot swap, warm-up before publish, refcounted draining."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from predmesh.common.deadline import Deadline
from predmesh.models.errors import ModelLoadError, VersionNotFound
from predmesh.models.lifecycle import ModelLifecycle
from predmesh.models.registry import ModelRegistry, ModelVersion
from predmesh.models.spec import parse_spec

from .builders import classifier_spec


class FakeBackend:
    name = "fake"

    def __init__(self) -> None:
        self.loaded: set[tuple[str, str, str]] = set()
        self.events: list[str] = []
        self.fail: set[str] = set()

    async def load(self, mv: ModelVersion) -> None:
        if str(mv) in self.fail:
            raise ModelLoadError(f"cannot load {mv}")
        self.loaded.add(mv.key)
        self.events.append(f"load {mv}")

    async def infer(self, mv: ModelVersion, batch: np.ndarray, deadline: Deadline | None = None) -> np.ndarray:
        assert mv.key in self.loaded
        self.events.append(f"infer {mv}")
        return np.full((len(batch), 2), 0.5)

    async def unload(self, mv: ModelVersion) -> None:
        self.loaded.discard(mv.key)
        self.events.append(f"unload {mv}")

    async def ready(self, mv: ModelVersion) -> bool:
        return mv.key in self.loaded

    async def close(self) -> None:
        pass


def mv(version: str, revision: str = "r1") -> ModelVersion:
    return ModelVersion(parse_spec(classifier_spec("m", version)), Path("/nowhere"), revision)


class Repo:
    def __init__(self, *versions: ModelVersion) -> None:
        self.versions = list(versions)

    def __call__(self) -> ModelRegistry:
        return ModelRegistry(self.versions)


async def test_new_version_is_loaded_and_warmed_before_it_is_the_default() -> None:
    backend, repo = FakeBackend(), Repo(mv("1"))
    life = ModelLifecycle(backend, repo, drain_s=0.05, warmup_runs=2)
    await life.start()
    repo.versions.append(mv("2"))
    result = await life.reload()
    assert result.added == ("m:2",) and result.generation == 2
    assert backend.events[-3:] == ["load m:2", "infer m:2", "infer m:2"]  # warm before publish
    assert life.resolve("m")[0].version == "2"
    await life.stop()
    assert backend.loaded == set()


async def test_removed_version_drains_pinned_requests_then_unloads_after_last_lease() -> None:
    backend, repo = FakeBackend(), Repo(mv("1"), mv("2"))
    life = ModelLifecycle(backend, repo, drain_s=0.1, warmup_runs=0)
    await life.start()
    v1, snap = life.resolve("m", "1")
    with life.lease(snap.registry.closure(v1)):  # an in-flight request on m:1
        repo.versions = [mv("2")]
        result = await life.reload()
        assert result.removed == ("m:1",)
        assert life.snapshot.registry.versions("m") == ["2"]  # no longer listed / default
        assert life.resolve("m", "1")[0] is v1  # pinned: still served while draining
        assert life.draining() == ["m:1"]
        await asyncio.sleep(0.2)  # drain period over: pins now NOT_FOUND ...
        with pytest.raises(VersionNotFound):
            life.resolve("m", "1")
        assert v1.key in backend.loaded and life.in_flight(v1) == 1  # ... but the in-flight one keeps it
    await asyncio.sleep(0.01)
    assert v1.key not in backend.loaded and life.unloaded == ["m:1"]
    await life.stop()


async def test_replaced_revision_swaps_and_drains_the_old_one() -> None:
    backend, repo = FakeBackend(), Repo(mv("1", "old"))
    life = ModelLifecycle(backend, repo, drain_s=0.05, warmup_runs=1)
    await life.start()
    repo.versions = [mv("1", "new")]
    result = await life.reload()
    assert result.replaced == ("m:1",) and not result.added and not result.removed
    assert life.resolve("m", "1")[0].revision == "new"
    assert backend.loaded == {("m", "1", "old"), ("m", "1", "new")}
    await asyncio.sleep(0.1)
    assert backend.loaded == {("m", "1", "new")}
    await life.stop()


async def test_failed_load_keeps_the_old_snapshot() -> None:
    backend, repo = FakeBackend(), Repo(mv("1"))
    life = ModelLifecycle(backend, repo, drain_s=0.05, warmup_runs=0)
    await life.start()
    backend.fail.add("m:2")
    repo.versions = [mv("2")]
    result = await life.reload()
    assert "cannot load m:2" in result.error and result.generation == 1
    assert life.resolve("m")[0].version == "1" and life.draining() == []
    with pytest.raises(ModelLoadError):  # the first load is strict
        await ModelLifecycle(backend, repo).start()
    await life.stop()
