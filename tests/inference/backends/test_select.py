"""Per-model backend placement and the Triton layout writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from predmesh.models.registry import scan_repository
from services.inference.backends.select import build_backends, placement
from services.inference.settings import InferenceSettings
from services.inference.triton.layout import triton_layout_present, write_triton_layout

from ...models.builders import linear_onnx, regressor_spec, write_model


def version(tmp_path: Path, **spec: Any):  # type: ignore[no-untyped-def]
    write_model(tmp_path, regressor_spec(**spec), linear_onnx(np.array([[1.0]])))
    (mv,) = scan_repository(tmp_path)
    return mv


@pytest.mark.parametrize(
    ("spec", "settings", "expected"),
    [
        ({}, {}, "local"),
        ({}, {"ort_workers": "h:1,h:2"}, "ort_worker"),
        ({"device": "gpu"}, {"ort_workers": "h:1", "triton_target": "t:1"}, "triton"),
        ({"device": "gpu"}, {"ort_workers": "h:1"}, "ort_worker"),  # no Triton: CPU default
        ({"device": "cpu"}, {"ort_workers": "h:1", "triton_target": "t:1"}, "ort_worker"),
        ({"backend": "local"}, {"ort_workers": "h:1"}, "local"),
        ({"backend": "triton"}, {}, "local"),  # not configured: in-process fallback
        ({}, {"triton_target": "t:1", "cpu_backend": "triton"}, "triton"),
    ],
)
def test_placement(tmp_path: Path, spec: dict[str, Any], settings: dict[str, Any], expected: str) -> None:
    mv = version(tmp_path, **spec)
    assert placement(mv, InferenceSettings(model_repository=tmp_path, **settings)) == expected


async def test_batching_wraps_workers_but_not_triton(tmp_path: Path) -> None:
    mv = version(tmp_path, device="gpu")
    settings = InferenceSettings(triton_target="t:1")
    routing = build_backends(settings, [mv])
    assert routing.backend_for(mv).name == "triton"
    await routing.close()
    routing = build_backends(InferenceSettings(triton_target="t:1", triton_batches=False), [mv])
    assert routing.backend_for(mv).name == "batching(triton)"
    await routing.close()


def test_triton_layout(tmp_path: Path) -> None:
    version(tmp_path, name="tiny", version="3")
    assert not triton_layout_present(tmp_path)
    assert write_triton_layout(tmp_path) == ["tiny"]
    assert triton_layout_present(tmp_path)
    prod = (tmp_path / "tiny" / "config.pbtxt").read_text()
    local = (tmp_path / "tiny" / "configs" / "cpu_local.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in prod and "KIND_GPU" in prod and "dynamic_batching" in prod
    assert 'backend: "python"' in local and "KIND_CPU" in local and "dynamic_batching" in local
    for text in (prod, local):
        assert 'name: "input" data_type: TYPE_FP32 dims: [1]' in text
        assert 'name: "output" data_type: TYPE_FP32 dims: [1]' in text
    assert (tmp_path / "tiny" / "3" / "model.py").read_text().startswith('"""Triton python-backend model')
    assert [str(mv) for mv in scan_repository(tmp_path)] == ["tiny:3"]  # registry ignores Triton files
