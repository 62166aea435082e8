"""Raw model output -> one `Prediction` per row, as the model spec says.

Classifier: the output must be [N, K] class probabilities with K = len(class_labels)
(a binary model may also emit [N] or [N, 1] = P(positive_class)). `score` is the
probability of `positive_class`, `scores` all K probabilities in class_labels order,
`label` the argmax class, or for binary models with a `threshold`, the positive class
iff score >= threshold.

Regressor: the output must be [N] or [N, 1]; `score` is the value, clipped to
[clip_min, clip_max] when set; `scores` is empty and `label` "".

Output that contradicts the spec raises ModelExecutionError (INTERNAL).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predmesh.models.errors import ModelExecutionError
from predmesh.models.spec import ModelSpec


@dataclass(frozen=True, slots=True)
class Prediction:
    """What a model produced for one row (domain twin of `predmesh.v1.Prediction`)."""

    score: float
    scores: tuple[float, ...] = ()
    label: str = ""


class Postprocessor:
    """Turns raw outputs of one model version into predictions. Immutable, thread-safe."""

    def __init__(self, spec: ModelSpec, model: str) -> None:
        self._spec = spec
        self._model = model
        self._labels = np.asarray(spec.class_labels, dtype=object)

    def __call__(self, raw: np.ndarray, n_rows: int) -> list[Prediction]:
        normalized = self.normalize(raw, n_rows)
        if self._spec.task == "classifier":
            return self._classify(normalized)
        return self._regress(normalized)

    def predictions(self, normalized: np.ndarray) -> list[Prediction]:
        """Predictions from an already normalized output (e.g. an ensemble's combination)."""
        if self._spec.task == "classifier":
            return self._classify(normalized)
        return self._regress(normalized)

    def normalize(self, raw: np.ndarray, n_rows: int) -> np.ndarray:
        """Checked float64 output: classifier [N, K] probabilities in class_labels order,
        regressor [N] values (unclipped). Ensembles combine these."""
        raw = np.asarray(raw)
        if raw.shape[:1] != (n_rows,):
            raise ModelExecutionError(f"model {self._model} returned {raw.shape[:1]} rows for {n_rows}")
        if not np.issubdtype(raw.dtype, np.number):
            raise ModelExecutionError(f"model {self._model} returned non-numeric output ({raw.dtype})")
        raw = raw.astype(np.float64, copy=False)
        if self._spec.task == "classifier":
            return self._probabilities(raw)
        if not (raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1)):
            raise ModelExecutionError(f"model {self._model} returned shape {raw.shape}, expected [N] or [N, 1]")
        return raw.reshape(-1)

    def _probabilities(self, raw: np.ndarray) -> np.ndarray:
        spec, n_classes = self._spec, len(self._spec.class_labels)
        positive = spec.positive_index
        if n_classes == 2 and (raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1)):
            p = raw.reshape(-1)
            probs = np.stack([1.0 - p, p] if positive == 1 else [p, 1.0 - p], axis=1)
        elif raw.ndim == 2 and raw.shape[1] == n_classes:
            probs = raw
        else:
            raise ModelExecutionError(
                f"model {self._model} returned shape {raw.shape}, expected [N, {n_classes}] class probabilities"
            )
        return probs

    def _classify(self, probs: np.ndarray) -> list[Prediction]:
        spec = self._spec
        positive = spec.positive_index
        score = probs[:, positive]
        threshold = spec.postprocess.threshold
        if threshold is not None:
            negative = 1 - positive
            index = np.where(score >= threshold, positive, negative)
        else:
            index = np.argmax(probs, axis=1)
        labels = self._labels[index].tolist()
        return [
            Prediction(score=s, scores=tuple(row), label=label)
            for s, row, label in zip(score.tolist(), probs.tolist(), labels, strict=True)
        ]

    def _regress(self, values: np.ndarray) -> list[Prediction]:
        post = self._spec.postprocess
        if post.clip_min is not None or post.clip_max is not None:
            values = np.clip(values, post.clip_min, post.clip_max)
        return [Prediction(score=v) for v in values.tolist()]
