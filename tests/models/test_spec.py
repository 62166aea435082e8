from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from predmesh.common.errors import ErrorCode
from predmesh.models.errors import ModelSpecError
from predmesh.models.spec import OneHot, Standardize, load_spec, parse_spec

from .builders import classifier_spec, regressor_spec


def test_valid_classifier_spec_with_defaults() -> None:
    spec = parse_spec(
        classifier_spec(
            version=3,
            inputs=[
                {"name": "amount", "transform": "log1p"},
                {"name": "age", "transform": {"type": "standardize", "mean": 1.0, "std": 2.0}},
                {
                    "name": "country",
                    "transform": {"type": "onehot", "categories": ["US", "other"], "other": "other"},
                },
                {"name": "verified", "transform": "bool"},
                {"name": "hour"},
            ],
            postprocess={},
        )
    )
    assert spec.version == "3"
    assert spec.feature_names == ("amount", "age", "country", "verified", "hour")
    assert spec.input_width == 6
    assert isinstance(spec.inputs[1].transform, Standardize)
    assert isinstance(spec.inputs[2].transform, OneHot)
    assert spec.inputs[4].transform.type == "identity"
    assert spec.positive_index == 1  # default: last class label


def test_roundtrip_through_yaml(tmp_path: Path) -> None:
    spec = parse_spec(classifier_spec(postprocess={"positive_class": "legit", "threshold": 0.3}))
    path = tmp_path / "model.yaml"
    path.write_text(spec.to_yaml())
    assert load_spec(path) == spec
    assert spec.positive_index == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "ranker"}, "task"),
        ({"version": "v1"}, "version 'v1'"),
        ({"name": "bad name"}, "name 'bad name'"),
        ({"inputs": []}, "inputs"),
        ({"inputs": [{"name": "a"}, {"name": "a"}]}, "duplicate inputs: ['a']"),
        ({"inputs": [{"name": "a", "transform": "sqrt"}]}, "inputs.0.transform"),
        ({"inputs": [{"name": "a", "transform": {"type": "standardize", "mean": 0, "std": 0}}]}, "std"),
        ({"inputs": [{"name": "a", "transform": {"type": "onehot", "categories": []}}]}, "categories"),
        ({"inputs": [{"name": "a", "transform": {"type": "onehot", "categories": ["x", "x"]}}]}, "unique"),
        (
            {"inputs": [{"name": "a", "transform": {"type": "onehot", "categories": ["x"], "other": "y"}}]},
            "other='y' must be one of the categories",
        ),
        ({"class_labels": ["only"]}, "at least 2 class_labels"),
        ({"class_labels": ["a", "a"]}, "class_labels must be unique"),
        ({"postprocess": {"positive_class": "maybe"}}, "positive_class 'maybe' is not in class_labels"),
        ({"postprocess": {"threshold": 1.5}}, "postprocess.threshold"),
        ({"class_labels": ["a", "b", "c"], "postprocess": {"threshold": 0.5}}, "exactly 2 class_labels"),
        ({"postprocess": {"clip_min": 0}}, "regressors only"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
        ({"entity_type": ""}, "entity_type"),
    ],
)
def test_invalid_classifier_specs(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelSpecError) as info:
        parse_spec(classifier_spec(**overrides), "repo/tinyclf/1/model.yaml")
    assert info.value.code is ErrorCode.FAILED_PRECONDITION
    assert info.value.message.startswith("repo/tinyclf/1/model.yaml: invalid model spec")
    assert message in info.value.message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"class_labels": ["a", "b"]}, "a regressor has no class_labels"),
        ({"postprocess": {"threshold": 0.5}}, "classifiers only"),
        ({"postprocess": {"clip_min": 2, "clip_max": 1}}, "clip_min must be <= clip_max"),
    ],
)
def test_invalid_regressor_specs(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelSpecError, match=message):
        parse_spec(regressor_spec(**overrides))


def test_load_spec_reports_yaml_and_shape_errors(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "a.yaml"
    bad_yaml.write_text("name: [unclosed\n")
    with pytest.raises(ModelSpecError, match="invalid YAML"):
        load_spec(bad_yaml)
    not_mapping = tmp_path / "b.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(ModelSpecError, match="expected a mapping"):
        load_spec(not_mapping)
    with pytest.raises(ModelSpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
