"""Rows (or columns) of feature values -> the float32 [N, D] matrix a model expects.

Feature values are plain Python scalars: `float`/`int` (numbers), `str` (categories),
`bool`, or `None` for "no value". Each spec input is checked and transformed one whole
column at a time with numpy; the only per-value Python work is collecting a column and
checking the set of its types.

Errors are `InvalidArgument` naming the feature (and the first bad row): a required
feature absent from the request, a row without a value for it, a value of the wrong
type for the transform, or a non-finite / out-of-domain number.

A `Preprocessor` is built once per model version, is immutable and thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from predmesh.common.errors import InvalidArgument
from predmesh.models.spec import (
    BoolToFloat,
    Identity,
    InputSpec,
    Log1p,
    ModelSpec,
    OneHot,
    Standardize,
)

FeatureValue = float | int | str | bool | None
Column = Sequence[FeatureValue]

_NUMBER_TYPES = frozenset({float, int})
_STRING_TYPES = frozenset({str})
_BOOL_TYPES = frozenset({bool})
_TYPE_NAMES = {float: "number", int: "number", str: "string", bool: "bool", type(None): "no value"}


def _first_bad(column: Column, allowed: frozenset[type]) -> tuple[int, FeatureValue]:
    for i, value in enumerate(column):
        if type(value) not in allowed:
            return i, value
    raise AssertionError("no bad value")  # pragma: no cover - only called when one exists


def _check_types(name: str, column: Column, allowed: frozenset[type], expected: str) -> None:
    types = set(map(type, column))
    if types <= allowed:
        return
    row, value = _first_bad(column, allowed)
    if value is None:
        raise InvalidArgument(f"feature {name!r}: row {row} has no value")
    got = _TYPE_NAMES.get(type(value), type(value).__name__)
    raise InvalidArgument(f"feature {name!r}: row {row} has a {got} value, expected a {expected}")


def _numbers(name: str, column: Column) -> np.ndarray:
    _check_types(name, column, _NUMBER_TYPES, "number")
    values = np.asarray(column, dtype=np.float64)
    if values.ndim != 1:  # pragma: no cover - defensive
        raise InvalidArgument(f"feature {name!r}: expected scalars")
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.argmin(finite))
        raise InvalidArgument(f"feature {name!r}: row {row} is not a finite number")
    return values


def _identity(spec: InputSpec, column: Column, out: np.ndarray) -> None:
    out[:, 0] = _numbers(spec.name, column)


def _log1p(spec: InputSpec, column: Column, out: np.ndarray) -> None:
    values = _numbers(spec.name, column)
    bad = values <= -1.0
    if bad.any():
        raise InvalidArgument(f"feature {spec.name!r}: row {int(np.argmax(bad))} is <= -1, outside log1p's domain")
    out[:, 0] = np.log1p(values)


def _standardize(spec: InputSpec, column: Column, out: np.ndarray) -> None:
    transform = spec.transform
    assert isinstance(transform, Standardize)
    out[:, 0] = (_numbers(spec.name, column) - transform.mean) / transform.std


def _bool(spec: InputSpec, column: Column, out: np.ndarray) -> None:
    _check_types(spec.name, column, _BOOL_TYPES, "bool")
    out[:, 0] = np.fromiter(column, dtype=bool, count=len(column))


def _onehot_encoder(transform: OneHot) -> Callable[[InputSpec, Column, np.ndarray], None]:
    lookup = {category: i for i, category in enumerate(transform.categories)}
    unknown = -1 if transform.other is None else lookup[transform.other]

    def encode(spec: InputSpec, column: Column, out: np.ndarray) -> None:
        _check_types(spec.name, column, _STRING_TYPES, "string")
        index = np.fromiter((lookup.get(v, unknown) for v in column), dtype=np.int64, count=len(column))  # type: ignore[arg-type]
        rows = np.nonzero(index >= 0)[0]
        out[rows, index[rows]] = 1.0

    return encode


def _encoder(spec: InputSpec) -> Callable[[InputSpec, Column, np.ndarray], None]:
    transform = spec.transform
    if isinstance(transform, Identity):
        return _identity
    if isinstance(transform, Log1p):
        return _log1p
    if isinstance(transform, Standardize):
        return _standardize
    if isinstance(transform, BoolToFloat):
        return _bool
    if isinstance(transform, OneHot):
        return _onehot_encoder(transform)
    raise TypeError(f"unsupported transform {transform!r}")  # pragma: no cover


class Preprocessor:
    """Builds a model's input matrix from named feature values. Immutable, thread-safe."""

    def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self._steps: list[tuple[InputSpec, int, int, Callable[[InputSpec, Column, np.ndarray], None]]] = []
        offset = 0
        for item in spec.inputs:
            self._steps.append((item, offset, offset + item.width, _encoder(item)))
            offset += item.width
        self.width = offset

    def transform_columns(self, columns: Mapping[str, Column], n_rows: int | None = None) -> np.ndarray:
        """Columns by feature name (extra names are ignored) -> float32 [N, D]."""
        if n_rows is None:
            n_rows = len(next(iter(columns.values()))) if columns else 0
        out = np.zeros((n_rows, self.width), dtype=np.float32)
        for item, start, stop, encode in self._steps:
            column = columns.get(item.name)
            if column is None:
                raise InvalidArgument(f"missing required feature {item.name!r} for model {self._spec.name}")
            if len(column) != n_rows:
                raise InvalidArgument(f"feature {item.name!r} has {len(column)} values, expected {n_rows}")
            encode(item, column, out[:, start:stop])
        return out

    def transform_rows(self, feature_names: Sequence[str], rows: Sequence[Sequence[FeatureValue]]) -> np.ndarray:
        """Rows aligned with `feature_names` -> float32 [N, D] in model input order."""
        index = {name: i for i, name in enumerate(feature_names)}
        if len(index) != len(feature_names):
            for at, name in enumerate(feature_names):
                if index[name] != at:  # `index` kept the last position of a repeated name
                    raise InvalidArgument(f"feature {name!r} is named twice in feature_names")
        width = len(feature_names)
        for i, row in enumerate(rows):
            if len(row) != width:
                raise InvalidArgument(f"row {i} has {len(row)} values, expected {width} (one per feature name)")
        columns: dict[str, Column] = {}
        for item, _, _, _ in self._steps:
            position = index.get(item.name)
            if position is None:
                raise InvalidArgument(f"missing required feature {item.name!r} for model {self._spec.name}")
            columns[item.name] = [row[position] for row in rows]
        return self.transform_columns(columns, len(rows))
