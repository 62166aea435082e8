"""Reference statistics saved with each model version, and the Population Stability Index.

File: `<model_repository>/<name>/<version>/reference.json`, written next to the model by
training (`compute_reference(...)` + `save_reference(...)`):

    {
      "format": "predmesh.reference/v1",
      "score": {"edges": [e0, e1, ..., eK], "fractions": [f1, ..., fK], "count": N},
      "features": {                      # optional; numeric features only
        "amount": {"edges": [...], "fractions": [...], "count": N}
      }
    }

`edges` are K+1 increasing bin edges; the first and last are -inf/+inf in spirit: values
below `edges[1]` fall in bin 0 and values at or above `edges[-2]` in the last bin, so the
outer edges only document the training range (JSON has no infinity). `fractions` are
the training data's share per bin (sum 1). Edges are quantiles of the training data, so
each bin holds about 1/K of it; duplicate quantiles (discrete data) are merged.

PSI = sum_i (o_i - e_i) * ln(o_i / e_i) over bins, with both fractions floored at
`EPSILON`. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
Pure functions; no I/O except `load_reference` / `save_reference` and `ReferenceStore`.

`ReferenceStore(root)(model, version)` returns `<root>/<model>/<version>/reference.json`
parsed, or None when absent or unreadable (logged once). Entries are re-read after
`ttl_s` so a reference written after the monitor started is picked up. Thread-safe.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = "predmesh.reference/v1"
FILENAME = "reference.json"
EPSILON = 1e-4
DEFAULT_BINS = 10


@dataclass(frozen=True, slots=True)
class Histogram:
    """Bin edges (K+1) and the expected fraction per bin (K) of a reference distribution."""

    edges: tuple[float, ...]
    fractions: tuple[float, ...]
    count: int = 0

    def __post_init__(self) -> None:
        if len(self.edges) < 2 or len(self.fractions) != len(self.edges) - 1:
            raise ValueError(f"need K+1 edges for K fractions, got {len(self.edges)} and {len(self.fractions)}")
        if any(b < a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be non-decreasing")
        total = sum(self.fractions)
        if not math.isclose(total, 1.0, abs_tol=1e-6) or any(f < 0 for f in self.fractions):
            raise ValueError(f"fractions must be >= 0 and sum to 1 (sum {total})")

    def bin_of(self, value: float) -> int:
        """Index of the bin holding `value` (outer bins are open-ended)."""
        return bisect.bisect_right(self.edges, value, 1, len(self.edges) - 1) - 1

    def counts(self, values: Iterable[float]) -> list[int]:
        return bin_counts(self.edges, values)

    def to_json(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "fractions": list(self.fractions), "count": self.count}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        return cls(
            edges=tuple(float(e) for e in data["edges"]),
            fractions=tuple(float(f) for f in data["fractions"]),
            count=int(data.get("count", 0)),
        )


@dataclass(frozen=True, slots=True)
class Reference:
    """What a model version's scores (and numeric features) looked like at training time."""

    score: Histogram
    features: Mapping[str, Histogram] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "score": self.score.to_json(),
            "features": {name: h.to_json() for name, h in sorted(self.features.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reference:
        if data.get("format", FORMAT) != FORMAT:
            raise ValueError(f"unknown reference format {data.get('format')!r}")
        return cls(
            score=Histogram.from_json(data["score"]),
            features={str(k): Histogram.from_json(v) for k, v in (data.get("features") or {}).items()},
        )


def histogram_of(values: Sequence[float], bins: int = DEFAULT_BINS) -> Histogram:
    """Quantile bins of `values` (about 1/bins of them per bin) and their exact fractions."""
    data = sorted(float(v) for v in values if not math.isnan(float(v)))
    if not data:
        raise ValueError("no values to build a reference histogram from")
    n = len(data)
    cuts: list[float] = []
    for i in range(1, bins):
        q = data[min(n - 1, (i * n) // bins)]
        if (not cuts or q > cuts[-1]) and q > data[0]:
            cuts.append(q)
    edges = (data[0], *cuts, data[-1])
    return Histogram(edges, tuple(c / n for c in bin_counts(edges, data)), n)


def bin_counts(edges: Sequence[float], values: Iterable[float]) -> list[int]:
    """Counts per bin of `edges` (K+1 edges, K bins; the outer bins are open-ended)."""
    out = [0] * (len(edges) - 1)
    last = len(edges) - 1
    for v in values:
        if not math.isnan(v):
            out[bisect.bisect_right(edges, v, 1, last) - 1] += 1
    return out


def compute_reference(
    scores: Sequence[float],
    features: Mapping[str, Sequence[Any]] | None = None,
    bins: int = DEFAULT_BINS,
) -> Reference:
    """Reference statistics from training-time scores and (optionally) feature columns.

    Non-numeric feature columns (strings) are skipped; booleans count as 0/1.
    """
    hists: dict[str, Histogram] = {}
    for name, column in (features or {}).items():
        numeric = [float(v) for v in column if isinstance(v, int | float) and not isinstance(v, str)]
        if numeric and len(numeric) == len(column):
            hists[name] = histogram_of(numeric, bins)
    return Reference(score=histogram_of(scores, bins), features=hists)


def psi(expected: Sequence[float], observed_counts: Sequence[int], epsilon: float = EPSILON) -> float:
    """Population Stability Index of observed bin counts against expected bin fractions."""
    if len(expected) != len(observed_counts):
        raise ValueError("expected and observed must have the same number of bins")
    total = sum(observed_counts)
    if total == 0:
        return 0.0
    value = 0.0
    for e, c in zip(expected, observed_counts, strict=True):
        o = max(c / total, epsilon)
        e = max(e, epsilon)
        value += (o - e) * math.log(o / e)
    return value


def save_reference(reference: Reference, version_dir: Path) -> Path:
    path = Path(version_dir) / FILENAME
    path.write_text(json.dumps(reference.to_json(), indent=1))
    return path


def load_reference(version_dir: Path) -> Reference | None:
    """The reference saved in a model version's directory, or None when it has none."""
    path = Path(version_dir) / FILENAME
    if not path.is_file():
        return None
    return Reference.from_json(json.loads(path.read_text()))


class ReferenceStore:
    def __init__(self, root: Path | None, ttl_s: float = 60.0) -> None:
        self._root = Path(root) if root else None
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, Reference | None]] = {}

    def __call__(self, model: str, version: str) -> Reference | None:
        if self._root is None or not model or not version or "/" in model + version or ".." in model + version:
            return None
        key = (model, version)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._ttl_s:
                return hit[1]
        try:
            reference = load_reference(self._root / model / version)
        except (OSError, ValueError, KeyError, TypeError) as err:
            if hit is None:
                log.warning("reference for %s:%s unreadable: %s", model, version, err)
            reference = None
        with self._lock:
            self._cache[key] = (now, reference)
        return reference
