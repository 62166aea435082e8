from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from predmesh.common.errors import NotFound
from predmesh.models.errors import ModelNotFound, ModelSpecError, VersionNotFound
from predmesh.models.registry import ModelRegistry, scan_repository

from .builders import linear_onnx, regressor_spec, write_model

ONNX = linear_onnx(np.ones((1, 1)))


def test_versions_sort_numerically_and_default_is_highest(tmp_path: Path) -> None:
    for version in ("9", "10", "2"):
        write_model(tmp_path, regressor_spec(version=version), ONNX)
    registry = ModelRegistry.from_directory(tmp_path)
    assert registry.versions("tiny") == ["2", "9", "10"]
    assert registry.get("tiny").version == "10"
    assert registry.get("tiny", "9").version == "9"
    assert registry.get("tiny", "9").onnx_path == tmp_path / "tiny" / "9" / "model.onnx"
    assert len(registry) == 3


def test_unknown_model_and_version_are_not_found(tmp_path: Path) -> None:
    write_model(tmp_path, regressor_spec(), ONNX)
    registry = ModelRegistry.from_directory(tmp_path)
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        registry.get("nope")
    with pytest.raises(VersionNotFound, match="model 'tiny' has no version '7' \\(available: 1\\)") as info:
        registry.get("tiny", "7")
    assert isinstance(info.value, NotFound)


def test_triton_files_and_spec_less_versions_are_skipped(tmp_path: Path) -> None:
    write_model(tmp_path, regressor_spec(), ONNX)
    (tmp_path / "tiny" / "config.pbtxt").write_text('backend: "onnxruntime"\n')
    (tmp_path / "tiny" / "configs").mkdir()
    (tmp_path / "tiny" / "configs" / "cpu_local.pbtxt").write_text('backend: "python"\n')
    (tmp_path / "triton_only" / "1").mkdir(parents=True)
    (tmp_path / "triton_only" / "1" / "model.onnx").write_bytes(ONNX)
    assert [str(mv) for mv in scan_repository(tmp_path)] == ["tiny:1"]


def test_spec_must_match_its_directories(tmp_path: Path) -> None:
    target = write_model(tmp_path, regressor_spec(version="2"), ONNX)
    target.rename(tmp_path / "tiny" / "3")
    with pytest.raises(ModelSpecError, match="spec says tiny:2 but lives in tiny/3"):
        scan_repository(tmp_path)


def test_missing_onnx_file_and_invalid_spec_fail_the_scan(tmp_path: Path) -> None:
    write_model(tmp_path, regressor_spec(), None)
    with pytest.raises(ModelSpecError, match=r"model\.onnx is missing"):
        scan_repository(tmp_path)
    write_model(tmp_path, regressor_spec(task="ranker"), ONNX)
    with pytest.raises(ModelSpecError, match=r"tiny/1/model.yaml: invalid model spec: task"):
        scan_repository(tmp_path)


def test_repository_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError, match="is not a directory"):
        scan_repository(tmp_path / "absent")
