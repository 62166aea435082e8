"""`predmesh optimize`: INT8/FP16 variants written as new versions, with an honest report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from predmesh.cli import main as cli_main
from predmesh.models.onnxruntime_local import OnnxRuntimeLocalBackend
from predmesh.models.registry import ModelRegistry
from predmesh.optimize import NotApplicable, optimize
from tests.inference.conftest import DemoModels


@pytest.fixture
def repo(demo_models: DemoModels, tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(demo_models.repo, target)
    return target


@pytest.mark.parametrize("method", ["dynamic", "static"])
async def test_int8_variant_of_the_mlp_is_a_new_loadable_version(repo: Path, method: str) -> None:
    report = optimize(repo, "fraud_nn", "1", "int8", method, bench_s=0.02)
    assert report.variant.version == "2" and report.source.version == "1"
    assert (repo / "fraud_nn" / "2" / "optimize_report.json").is_file()
    assert 0 < report.mean_abs_score_diff <= report.max_abs_score_diff < 0.2  # changed, but close
    assert report.label_agreement > 0.99 and abs(report.variant.auc - report.source.auc) < 0.01
    assert report.holdout_rows == 4000
    registry = ModelRegistry.from_directory(repo)
    assert registry.versions("fraud_nn") == ["1", "2"]
    backend = OnnxRuntimeLocalBackend()
    await backend.load(registry.get("fraud_nn", "2"))  # the spec and the quantized graph agree
    await backend.close()
    ops = {n.op_type for n in __import__("onnx").load(str(repo / "fraud_nn" / "2" / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"}


def test_int8_of_a_tree_ensemble_is_refused_and_writes_nothing(repo: Path) -> None:
    with pytest.raises(NotApplicable, match="TreeEnsemble"):
        optimize(repo, "fraud", "1", "int8", bench_s=0.02)
    assert sorted(p.name for p in (repo / "fraud").iterdir()) == ["1", "2", "3"]  # no staging left behind


def test_fp16_variant_with_tensorrt_config(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["optimize", "fraud_nn", "--version", "1", "--to", "fp16", "--repo", str(repo), "--bench-s", "0.02"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "fraud_nn:2 = fp16" in out and "label agreement" in out
    version = repo / "fraud_nn" / "2"
    assert "tensorrt" in (version / "tensorrt.pbtxt").read_text()
    spec = ModelRegistry.from_directory(repo).get("fraud_nn", "2").spec
    assert spec.device == "gpu"


def test_cli_exit_code_2_when_not_applicable(repo: Path) -> None:
    assert cli_main(["optimize", "fraud", "--version", "1", "--to", "int8", "--repo", str(repo)]) == 2
