"""Ensemble specs: validation at load (members, cycles, weights, labels) and combining."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from predmesh.models.ensemble import Combiner
from predmesh.models.errors import ModelSpecError
from predmesh.models.registry import ModelRegistry
from predmesh.models.spec import parse_spec

from .builders import classifier_spec, linear_onnx, write_model


def ensemble_spec(name: str = "ens", members: Any = None, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "version": "1",
        "kind": "ensemble",
        "task": "classifier",
        "entity_type": "user",
        "class_labels": ["legit", "fraud"],
        "ensemble": {"members": members or [{"model": "a", "version": "1", "weight": 1.0}]},
        "postprocess": {"positive_class": "fraud"},
    }
    spec.update(overrides)
    return spec


def repo_with_members(tmp_path: Path) -> Path:
    onnx = linear_onnx(np.ones((1, 2)), softmax=True)
    write_model(tmp_path, classifier_spec("a"), onnx)
    write_model(tmp_path, classifier_spec("b", inputs=[{"name": "age", "transform": "identity"}]), onnx)
    return tmp_path


def test_features_are_the_union_in_member_order(tmp_path: Path) -> None:
    repo = repo_with_members(tmp_path)
    members = [{"model": "b", "version": "1"}, {"model": "a", "version": 1, "weight": 2}]
    write_model(repo, ensemble_spec(members=members), None)
    registry = ModelRegistry.from_directory(repo)
    ens = registry.get("ens")
    assert registry.features(ens) == ("age", "amount")
    assert [str(m) for m in registry.members(ens)] == ["b:1", "a:1"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ensemble_spec(members=[{"model": "zzz", "version": "1"}]), "member zzz:1 is not in the repository"),
        (ensemble_spec(class_labels=["no", "yes"], postprocess={}), "incompatible with the ensemble"),
        (ensemble_spec(task="regressor", class_labels=[], postprocess={}), "is a classifier, the ensemble a regressor"),
    ],
)
def test_bad_ensembles_fail_the_scan_naming_the_file(tmp_path: Path, spec: dict[str, Any], message: str) -> None:
    repo = repo_with_members(tmp_path)
    write_model(repo, spec, None)
    with pytest.raises(ModelSpecError, match=message) as info:
        ModelRegistry.from_directory(repo)
    assert str(repo / "ens" / "1" / "model.yaml") in str(info.value)


def test_cycles_are_rejected(tmp_path: Path) -> None:
    repo = repo_with_members(tmp_path)
    write_model(repo, ensemble_spec("e1", members=[{"model": "e2", "version": "1"}]), None)
    write_model(
        repo, ensemble_spec("e2", members=[{"model": "e1", "version": "1"}, {"model": "a", "version": "1"}]), None
    )
    with pytest.raises(ModelSpecError, match="ensemble cycle e1:1 -> e2:1 -> e1:1"):
        ModelRegistry.from_directory(repo)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ensemble": {"members": [{"model": "a", "version": "1", "weight": 0}]}}, "greater than 0"),
        ({"ensemble": {"members": [{"model": "a", "version": "1", "weight": -1}]}}, "greater than 0"),
        ({"ensemble": {"members": []}}, "at least 1"),
        ({"ensemble": {"members": [{"model": "a", "version": "1"}], "combine": "stacking"}}, "needs a stacking block"),
        ({"ensemble": {"members": [{"model": "ens", "version": "1"}]}}, "its own member"),
        ({"inputs": [{"name": "amount"}]}, "takes no inputs"),
        ({"device": "gpu"}, "no device/backend"),
        ({"ensemble": None}, "needs an ensemble block"),
    ],
)
def test_bad_ensemble_specs(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelSpecError, match=message):
        parse_spec(ensemble_spec(**overrides), "ens.yaml")


def test_weighted_average_reorders_labels_and_stacking_is_logistic() -> None:
    a = parse_spec(classifier_spec("a"))
    b = parse_spec(classifier_spec("b", class_labels=["fraud", "legit"]))
    members = [{"model": "a", "version": "1", "weight": 1}, {"model": "b", "version": "1", "weight": 3}]
    avg = Combiner(parse_spec(ensemble_spec(members=members)), [a, b])
    pa = np.array([[0.8, 0.2], [0.4, 0.6]])
    pb = np.array([[0.1, 0.9], [0.5, 0.5]])  # b's columns are [fraud, legit]
    np.testing.assert_allclose(avg([pa, pb]), (pa + 3 * pb[:, ::-1]) / 4)
    stacked = parse_spec(
        ensemble_spec(
            members=members,
            ensemble={"members": members, "combine": "stacking", "stacking": {"coef": [2.0, -1.0], "bias": 0.5}},
        )
    )
    got = Combiner(stacked, [a, b])([pa, pb])
    z = 0.5 + 2.0 * pa[:, 1] - 1.0 * pb[:, 0]
    np.testing.assert_allclose(got[:, 1], 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(got.sum(axis=1), 1.0)
