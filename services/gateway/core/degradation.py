"""When an answer scored by the requested model is still `degraded`: the stored-features rule.

The features service replaces every missing or invalid value with its registered default and
says which ones it replaced. The gateway turns that into the answer's honesty flags:

- `missing_features` = the store-sourced features the store had no value for (unknown entity,
  empty or partly loaded store). The answer is `degraded=True` with reason `features_missing`
  when there are more of them than the model's `max_missing_features` (routing table, default 0):
  a model scored on defaults instead of the entity's data must not look like a normal answer.
- Request features the caller left out, and stored values that failed validation (out of range,
  unparsable: the features service counts them), are listed in `defaulted_features` only.
- Caller-supplied context values of the wrong kind, NaN or inf never get here: they are
  INVALID_ARGUMENT naming the field (`check_context_value` here for NaN/inf, the features
  service for kinds, ranges and categories).

Pure functions; no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from services.gateway.core.types import FeatureRow, PredictOutput, Scalar
from services.gateway.errors import InvalidArgument

FEATURES_MISSING = "features_missing"


def check_context_value(name: str, value: Scalar) -> Scalar:
    """`value` unchanged; InvalidArgument naming `name` when it is a NaN or an infinite number."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(f"context[{name!r}]: {value} is not a finite number")
    return value


def with_features_verdict(out: PredictOutput, row: FeatureRow, max_missing: int) -> PredictOutput:
    """`out` with `missing_features` (and `stale_features`) set and, beyond `max_missing` missing ones,
    degraded/features_missing. Stale values (older than the registry's max_age_s) are scored with their
    defaults and listed, but do not make the answer degraded."""
    if row.stale:
        out = dataclasses.replace(out, stale_features=row.stale)
    if not row.store_missing:
        return out
    degraded = out.degraded or len(row.store_missing) > max_missing
    reason = out.degraded_reason or (FEATURES_MISSING if degraded else "")
    return dataclasses.replace(out, missing_features=row.store_missing, degraded=degraded, degraded_reason=reason)


def with_features_verdicts(
    outputs: list[PredictOutput], rows: Sequence[FeatureRow], max_missing: int
) -> list[PredictOutput]:
    """`with_features_verdict` for each output and its row; `outputs` itself when no row has missing
    stored or stale features (the common case costs one pass over the rows)."""
    if not any(row.store_missing or row.stale for row in rows):
        return outputs
    return [with_features_verdict(out, row, max_missing) for out, row in zip(outputs, rows, strict=True)]
