"""Combining the outputs of an ensemble's members (spec: `ensemble:` in predmesh/models/spec.py).

`Combiner(spec, members)` is built once per ensemble version from its spec and its
member versions' specs; it is immutable and thread-safe. It takes one normalized
output per member (`Postprocessor.normalize`: classifier [N, K] probabilities in the
member's class_labels order, regressor [N] values), reorders classifier columns to the
ensemble's class_labels, and combines:

- `weighted_average`: sum(w_i * P_i) / sum(w_i) (probabilities or values);
- `stacking`: z = bias + sum(coef_i * s_i) with s_i the member's score
  (P(ensemble's positive class), or its value); a binary classifier answers
  P(positive) = sigmoid(z), a regressor z.

The result has the shape the ensemble's own Postprocessor expects ([N, K] or [N]).
Running the members (concurrently, each on its backend) is the core's job
(core/service.py); this module is pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from predmesh.models.spec import ModelSpec


class Combiner:
    """Combines member outputs of one ensemble version (see module docstring)."""

    def __init__(self, spec: ModelSpec, members: Sequence[ModelSpec]) -> None:
        if spec.ensemble is None:
            raise ValueError(f"{spec.name}:{spec.version} is not an ensemble")
        self._spec = spec
        self._classifier = spec.task == "classifier"
        # Column order per member: ensemble label j comes from the member's column order[j].
        self._orders = [
            np.asarray([m.class_labels.index(label) for label in spec.class_labels], dtype=np.int64) for m in members
        ]
        ensemble = spec.ensemble
        self._combine = ensemble.combine
        self._weights = np.asarray([m.weight for m in ensemble.members], dtype=np.float64)
        stacking = ensemble.stacking
        self._coef = np.asarray(stacking.coef if stacking else (), dtype=np.float64)
        self._bias = stacking.bias if stacking else 0.0

    def __call__(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        if self._classifier:
            aligned = [out[:, order] for out, order in zip(outputs, self._orders, strict=True)]
        else:
            aligned = list(outputs)
        if self._combine == "weighted_average":
            total = sum(w * out for w, out in zip(self._weights, aligned, strict=True))
            result: np.ndarray = np.asarray(total) / float(self._weights.sum())
            return result
        positive = self._spec.positive_index
        scores = np.stack([out[:, positive] if self._classifier else out for out in aligned], axis=1)
        z = scores @ self._coef + self._bias
        if not self._classifier:
            return np.asarray(z)
        p = 1.0 / (1.0 + np.exp(-z))
        probs = np.empty((len(p), 2), dtype=np.float64)
        probs[:, positive] = p
        probs[:, 1 - positive] = 1.0 - p
        return probs
