"""`predmesh report MODEL [--out report.html]`: a static HTML report of one model.

Charts of the score distribution per version/arm, drift (score PSI from the store vs each
version's reference.json, and score/feature PSI from the drift monitor's /metrics when it is
reachable), canary vs stable (rate, p99 latency, error+degraded rate, AUC) and the rollout
decisions. The numbers come from the analytics sink's views through AnalyticsService.Query
(services/sink/core/views.py, the SQL the rollout controller reads); rendering is
predmesh/report (one self-contained file: inline SVG, no external scripts).
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from pathlib import Path
from typing import Any

from predmesh.cli.analytics import run_query, sink_channel
from predmesh.cli.common import running_mesh

MONITOR_KEY = "drift monitor (Prometheus /metrics)"


def monitor_url(args: argparse.Namespace) -> str:
    """--monitor-url, else the running mesh's drift monitor, else "" (no monitor numbers)."""
    if args.monitor_url:
        return str(args.monitor_url)
    try:
        state = running_mesh(args.state_dir)
    except SystemExit:
        return ""
    return str(state.get(MONITOR_KEY, ""))


def fetch_metrics(url: str, timeout_s: float) -> str | None:
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise SystemExit(f"error: --monitor-url must be http(s)://..., got {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return str(reply.read().decode("utf-8", "replace"))
    except OSError as err:
        print(f"warning: drift monitor not reachable at {url}: {err}")
        return None


def cmd_report(args: argparse.Namespace) -> int:
    import grpc

    from predmesh.report.collect import collect
    from predmesh.report.page import render
    from services.monitor.core.reference import ReferenceStore

    repo = Path(args.model_repository) if args.model_repository else Path(args.state_dir) / "models"
    references = ReferenceStore(repo) if repo.is_dir() else None
    metrics = fetch_metrics(monitor_url(args), args.timeout)
    since = time.time() - args.since_s if args.since_s > 0 else 0.0
    try:
        with sink_channel(args.target, args.state_dir) as channel:

            def query(sql: str) -> list[dict[str, Any]]:
                columns, rows, _ = run_query(channel, sql, timeout_s=args.timeout)
                return [dict(zip(columns, row, strict=True)) for row in rows]

            data = collect(
                query,
                args.model,
                since_s=since,
                references=references,
                monitor_metrics=metrics,
                psi_alert=args.psi_alert,
            )
    except grpc.RpcError as err:
        print(f"error: {err.code().name}: {err.details()}")
        return 1
    out = Path(args.out or f"report-{args.model}.html")
    out.write_text(render(data), encoding="utf-8")
    print(f"wrote {out} ({len(data.arms)} version/arm rows, {len(data.decisions)} rollout decisions)")
    return 0


def add_parser(sub: Any) -> None:
    report = sub.add_parser("report", help="static HTML report of a model (scores, drift, canary, rollouts)")
    report.add_argument("model")
    report.add_argument("--out", default="", help="output file (default report-MODEL.html)")
    report.add_argument("--since-s", type=float, default=0.0, help="only the last N seconds (0 = everything stored)")
    report.add_argument("--target", default="", help="analytics sink host:port (default: the running mesh's)")
    report.add_argument("--state-dir", default=".predmesh")
    report.add_argument(
        "--model-repository", default="", help="model repository with reference.json files (default <state-dir>/models)"
    )
    report.add_argument("--monitor-url", default="", help="drift monitor /metrics URL (default: the running mesh's)")
    report.add_argument("--psi-alert", type=float, default=0.25, help="PSI alert line drawn on the drift chart")
    report.add_argument("--timeout", type=float, default=30.0, help="deadline per query (seconds)")
    report.set_defaults(func=cmd_report)
