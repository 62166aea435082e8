"""PromQL of the rollout controller's Prometheus evidence, and parsing of the HTTP API's answers. Pure.

The series are the drift monitor's, counted from every logged prediction per model, version and
arm (services/monitor/metrics.py): `predmesh_monitor_predictions_total{model,version,arm,degraded}`
and the histogram `predmesh_monitor_prediction_latency_seconds{model,version,arm}`. Over the
current rollout step (`window_s`: since the step began, whole seconds, evaluated at the decision
time) two instant queries per model:

- `counts_query`: `sum by (version, arm, degraded) (increase(...predictions_total{...}[Ws]))`
  -> requests and error+degraded requests per arm;
- `p99_query`: `histogram_quantile(0.99, sum by (le, version, arm) (increase(..._bucket{...}[Ws])))`
  -> p99 latency per arm (seconds; interpolated inside the histogram's buckets, LATENCY_BUCKETS).

`selector` adds label matchers (e.g. `namespace="ml"`) when several releases share a Prometheus.
`samples(body)` turns a `/api/v1/query` JSON answer into (labels, value) pairs: `vector` and
`scalar` as is, `matrix` by each series' newest value; values may be "NaN" / "+Inf" (returned as
floats: callers treat them as not measured). A non-success answer or a malformed one raises
EvidenceUnavailable. `arm_values` reads one arm's n, p99 and error+degraded rate out of them; an
arm with no series has n 0 and no p99 (None = insufficient evidence, services/sink/core/decide.py).
"""

from __future__ import annotations

import math
import re
from typing import Any

from services.sink.errors import EvidenceUnavailable

COUNTER = "predmesh_monitor_predictions_total"
LATENCY_BUCKET = "predmesh_monitor_prediction_latency_seconds_bucket"
ARMS = ("stable", "canary")
_MATCHER = r'[A-Za-z_][A-Za-z0-9_]*\s*(?:=|!=|=~|!~)\s*"(?:[^"\\\n]|\\.)*"'
_SELECTOR = re.compile(rf"^\s*(?:{_MATCHER}\s*(?:,\s*{_MATCHER}\s*)*,?\s*)?$")

Sample = tuple[dict[str, str], float]


def check_selector(selector: str) -> str:
    """Extra label matchers `a="x", b=~"y"` (ValueError when not of that form)."""
    if not _SELECTOR.match(selector):
        raise ValueError(f"not a list of PromQL label matchers: {selector!r}")
    return selector.strip().rstrip(",").strip()


def label_value(value: str) -> str:
    """A PromQL string literal (double-quoted, escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _matchers(model: str, selector: str) -> str:
    arms = "|".join(ARMS)
    extra = check_selector(selector)
    return f'model={label_value(model)},arm=~"{arms}"' + (f",{extra}" if extra else "")


def window(window_s: float) -> str:
    """A PromQL range of whole seconds covering `window_s` (at least 1s)."""
    return f"{max(1, math.ceil(window_s))}s"


def counts_query(model: str, window_s: float, selector: str = "") -> str:
    return f"sum by (version, arm, degraded) (increase({COUNTER}{{{_matchers(model, selector)}}}[{window(window_s)}]))"


def p99_query(model: str, window_s: float, selector: str = "") -> str:
    return (
        f"histogram_quantile(0.99, sum by (le, version, arm) "
        f"(increase({LATENCY_BUCKET}{{{_matchers(model, selector)}}}[{window(window_s)}])))"
    )


def _number(raw: Any) -> float:
    try:
        return float(raw)  # "NaN", "+Inf", "-Inf" included
    except (TypeError, ValueError) as err:
        raise EvidenceUnavailable(f"Prometheus: not a sample value: {raw!r}") from err


def _pair(raw: Any) -> float:
    if not isinstance(raw, list) or len(raw) != 2:
        raise EvidenceUnavailable(f"Prometheus: not a [time, value] pair: {str(raw)[:100]}")
    return _number(raw[1])


def samples(body: Any) -> list[Sample]:
    """(labels, value) per series of a `/api/v1/query` answer (see the module docstring)."""
    if not isinstance(body, dict):
        raise EvidenceUnavailable("Prometheus: the answer is not a JSON object")
    if body.get("status") != "success":
        kind, error = body.get("errorType", "?"), str(body.get("error", ""))[:300]
        raise EvidenceUnavailable(f"Prometheus query failed: {kind}: {error}")
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("result"), list | tuple):
        if isinstance(data, dict) and data.get("resultType") == "scalar":
            return [({}, _pair(data.get("result")))]
        raise EvidenceUnavailable("Prometheus: the answer has no data.result")
    kind, result = data.get("resultType"), data["result"]
    if kind == "scalar":
        return [({}, _pair(result))]
    out: list[Sample] = []
    for series in result:
        if not isinstance(series, dict) or not isinstance(series.get("metric", {}), dict):
            raise EvidenceUnavailable("Prometheus: a series is not an object")
        labels = {str(k): str(v) for k, v in series.get("metric", {}).items()}
        if kind == "vector":
            out.append((labels, _pair(series.get("value"))))
        elif kind == "matrix":
            values = series.get("values") or []
            if not isinstance(values, list):
                raise EvidenceUnavailable("Prometheus: matrix values are not a list")
            if values:
                out.append((labels, _pair(values[-1])))
        else:
            raise EvidenceUnavailable(f"Prometheus: unexpected result type {kind!r}")
    return out


def _finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


def arm_values(
    counts: list[Sample], p99s: list[Sample], version: str, arm: str
) -> tuple[int, float | None, float | None]:
    """(n, p99_ms or None, error+degraded rate or None) of one arm (version and arm labels)."""

    def mine(labels: dict[str, str]) -> bool:
        return labels.get("version") == version and labels.get("arm") == arm

    total = bad = 0.0
    for labels, value in counts:
        if mine(labels) and _finite(value):
            total += value
            if labels.get("degraded") == "true":
                bad += value
    n = round(total)
    rate = bad / total if total > 0 else None
    p99 = next((v * 1e3 for labels, v in p99s if mine(labels) and _finite(v)), None)
    return n, p99, rate
