from __future__ import annotations

import numpy as np
import pytest

from predmesh.models.errors import ModelExecutionError
from predmesh.models.postprocess import Postprocessor, Prediction
from predmesh.models.spec import parse_spec

from .builders import classifier_spec, regressor_spec


def test_classifier_argmax_and_positive_class_score() -> None:
    post = Postprocessor(parse_spec(classifier_spec(postprocess={"positive_class": "fraud"})), "m:1")
    out = post(np.array([[0.9, 0.1], [0.3, 0.7]], dtype=np.float32), 2)
    assert [p.label for p in out] == ["legit", "fraud"]
    assert out[1].score == pytest.approx(0.7)
    assert out[0].scores == pytest.approx((0.9, 0.1))


def test_classifier_threshold_overrides_argmax() -> None:
    post = Postprocessor(parse_spec(classifier_spec(postprocess={"positive_class": "fraud", "threshold": 0.2})), "m:1")
    out = post(np.array([[0.75, 0.25], [0.85, 0.15]]), 2)
    assert [p.label for p in out] == ["fraud", "legit"]


def test_positive_class_first_and_single_column_output() -> None:
    spec = parse_spec(classifier_spec(postprocess={"positive_class": "legit"}))
    out = Postprocessor(spec, "m:1")(np.array([[0.8], [0.3]]), 2)
    assert [p.score for p in out] == pytest.approx([0.8, 0.3])
    assert out[0].scores == pytest.approx((0.8, 0.2))
    assert [p.label for p in out] == ["legit", "fraud"]


def test_multiclass() -> None:
    spec = parse_spec(classifier_spec(class_labels=["a", "b", "c"], postprocess={"positive_class": "c"}))
    out = Postprocessor(spec, "m:1")(np.array([[0.2, 0.5, 0.3]]), 1)
    (only,) = out
    assert (only.score, only.scores, only.label) == (pytest.approx(0.3), pytest.approx((0.2, 0.5, 0.3)), "b")


def test_regressor_clip_and_shapes() -> None:
    spec = parse_spec(regressor_spec(postprocess={"clip_min": 0.0, "clip_max": 10.0}))
    post = Postprocessor(spec, "m:1")
    assert [p.score for p in post(np.array([[-5.0], [3.0], [50.0]]), 3)] == [0.0, 3.0, 10.0]
    assert post(np.array([1.5]), 1) == [Prediction(score=1.5)]


@pytest.mark.parametrize(
    ("raw", "n_rows", "message"),
    [
        (np.zeros((2, 3)), 2, r"shape \(2, 3\), expected \[N, 2\]"),
        (np.zeros((3, 2)), 2, "returned"),
        (np.array([["a", "b"]]), 1, "non-numeric"),
    ],
)
def test_classifier_output_that_contradicts_the_spec(raw: np.ndarray, n_rows: int, message: str) -> None:
    post = Postprocessor(parse_spec(classifier_spec()), "tinyclf:1")
    with pytest.raises(ModelExecutionError, match=message):
        post(raw, n_rows)


def test_regressor_output_that_contradicts_the_spec() -> None:
    with pytest.raises(ModelExecutionError, match=r"expected \[N\] or \[N, 1\]"):
        Postprocessor(parse_spec(regressor_spec()), "tiny:1")(np.zeros((2, 2)), 2)
