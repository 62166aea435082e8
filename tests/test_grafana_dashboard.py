"""The Grafana dashboard is valid JSON and queries only metrics that predmesh defines."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "predmesh.json"
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def _defined_names() -> str:
    return "\n".join(p.read_text() for d in ("predmesh", "services") for p in (ROOT / d).rglob("*.py"))


def test_every_queried_metric_is_defined() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    assert len(dash["panels"]) >= 9
    source = _defined_names()
    names = {m for e in exprs for m in re.findall(r"\bpredmesh_[a-z0-9_]+", e)}
    assert names
    for name in sorted(names):
        base = name
        for suffix in _SUFFIXES:
            base = base.removesuffix(suffix)
        # Metrics are declared by full name, or by namespace + short name (the logger's).
        short = base.removeprefix("predmesh_logger_")
        assert f'"{base}"' in source or (short != base and f'"{short}"' in source), f"{name} is not defined"


def test_dashboard_covers_the_issue_signals() -> None:
    text = DASHBOARD.read_text()
    for needle in (
        "predmesh_grpc_server_handled_total",
        "predmesh_grpc_server_handling_seconds_bucket",
        "grpc_code",
        "predmesh_gateway_degraded_total",
        "predmesh_inference_batch_size_bucket",
        "predmesh_inference_queue_depth",
        "predmesh_features_defaults_used_total",
        "predmesh_logger_kafka_up",
        "predmesh_monitor_score_psi",
        "predmesh_monitor_feature_psi",
    ):
        assert needle in text, needle
