from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from predmesh.models.backend import Backend
from predmesh.models.errors import ModelLoadError, ModelNotReady
from predmesh.models.onnxruntime_local import OnnxRuntimeLocalBackend
from predmesh.models.registry import ModelVersion, scan_repository

from ...models.builders import linear_onnx, regressor_spec, write_model

WEIGHTS = np.array([[2.0], [-1.0]])


def model(tmp_path: Path, onnx_bytes: bytes, **overrides: Any) -> ModelVersion:
    spec = regressor_spec(inputs=[{"name": "a"}, {"name": "b"}], **overrides)
    write_model(tmp_path, spec, onnx_bytes)
    (found,) = scan_repository(tmp_path)
    return found


@pytest.fixture
async def backend() -> AsyncIterator[OnnxRuntimeLocalBackend]:
    backend = OnnxRuntimeLocalBackend(executor_threads=2)
    try:
        yield backend
    finally:
        await backend.close()


async def test_implements_the_backend_protocol(backend: OnnxRuntimeLocalBackend) -> None:
    assert isinstance(backend, Backend)


async def test_lifecycle_load_infer_unload(tmp_path: Path, backend: OnnxRuntimeLocalBackend) -> None:
    mv = model(tmp_path, linear_onnx(WEIGHTS, bias=np.array([0.5])))
    assert not await backend.ready(mv)
    await backend.load(mv)
    await backend.load(mv)  # no-op
    assert await backend.ready(mv)
    batch = np.array([[1.0, 1.0], [3.0, 2.0]], dtype=np.float32)
    out = await backend.infer(mv, batch)
    np.testing.assert_allclose(out, [[1.5], [4.5]])
    await backend.unload(mv)
    await backend.unload(mv)  # no-op
    assert not await backend.ready(mv)
    with pytest.raises(ModelNotReady, match="tiny:1 is not loaded"):
        await backend.infer(mv, batch)


async def test_concurrent_infers_match_sequential(tmp_path: Path, backend: OnnxRuntimeLocalBackend) -> None:
    mv = model(tmp_path, linear_onnx(WEIGHTS))
    await backend.load(mv)
    batches = [np.full((i + 1, 2), float(i), dtype=np.float32) for i in range(16)]
    results = await asyncio.gather(*(backend.infer(mv, b) for b in batches))
    for batch, result in zip(batches, results, strict=True):
        np.testing.assert_allclose(result, batch @ WEIGHTS)


@pytest.mark.parametrize(
    ("onnx_kwargs", "spec_overrides", "message"),
    [
        ({}, {"onnx": {"input": "features", "output": "output"}}, "ONNX input 'features' not found"),
        ({}, {"onnx": {"input": "input", "output": "probs"}}, "ONNX output 'probs' not found"),
        ({"input_width": 3}, {}, "has width 3, the spec's inputs make 2 columns"),
    ],
)
async def test_load_rejects_models_that_contradict_the_spec(
    tmp_path: Path,
    backend: OnnxRuntimeLocalBackend,
    onnx_kwargs: dict[str, Any],
    spec_overrides: dict[str, Any],
    message: str,
) -> None:
    weights = np.ones((onnx_kwargs.get("input_width", 2), 1))
    mv = model(tmp_path, linear_onnx(weights, **onnx_kwargs), **spec_overrides)
    with pytest.raises(ModelLoadError, match=message):
        await backend.load(mv)
    assert not await backend.ready(mv)


async def test_load_rejects_a_corrupt_file(tmp_path: Path, backend: OnnxRuntimeLocalBackend) -> None:
    mv = model(tmp_path, b"definitely not onnx")
    with pytest.raises(ModelLoadError, match=r"tiny:1: cannot load model\.onnx"):
        await backend.load(mv)


async def test_closed_backend_refuses_loads(tmp_path: Path) -> None:
    backend = OnnxRuntimeLocalBackend()
    mv = model(tmp_path, linear_onnx(WEIGHTS))
    await backend.load(mv)
    await backend.close()
    await backend.close()  # idempotent
    assert not await backend.ready(mv)
    with pytest.raises(RuntimeError, match="closed"):
        await backend.load(mv)
