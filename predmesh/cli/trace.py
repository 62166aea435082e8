"""`predmesh trace REQUEST_ID`: the span tree of one request, from the local traces in the sink.

The request's trace id comes from the prediction log (`predictions.trace_id`, or pass
`--trace-id`); its spans were exported by the services to the sink's OTLP receiver
(`predmesh up` with the sink). Prints one line per span, indented under its parent:
offset from the trace's first span and duration in milliseconds, service and span name.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from typing import Any

from predmesh.cli.analytics import run_query, sink_channel

_HEX = re.compile(r"^[0-9a-f]{32}$")


def trace_id_of(channel: Any, request_id: str, timeout_s: float) -> str:
    rid = request_id.replace("\\", "\\\\").replace("'", "\\'")
    _, rows, _ = run_query(
        channel,
        f"SELECT trace_id FROM predmesh.predictions FINAL WHERE request_id = '{rid}' AND trace_id != '' LIMIT 1",
        timeout_s=timeout_s,
    )
    return str(rows[0][0]) if rows else ""


def span_tree(spans: list[dict[str, Any]]) -> list[str]:
    """Lines of the tree (roots: spans whose parent is not among them), children by start time."""
    if not spans:
        return []
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    roots: list[dict[str, Any]] = []
    for s in sorted(spans, key=lambda s: s["start_us"]):
        (children[s["parent_span_id"]] if s["parent_span_id"] in ids else roots).append(s)
    t0 = min(s["start_us"] for s in spans)
    lines: list[str] = []

    def walk(span: dict[str, Any], depth: int) -> None:
        offset = (span["start_us"] - t0) / 1000
        lines.append(f"{offset:9.2f} ms {span['duration_ms']:9.2f} ms  {'  ' * depth}{span['service']}: {span['name']}")
        for child in children[span["span_id"]]:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return lines


def cmd_trace(args: argparse.Namespace) -> int:
    with sink_channel(args.target, args.state_dir) as channel:
        trace_id = args.trace_id or trace_id_of(channel, args.request_id, args.timeout)
        if not _HEX.fullmatch(trace_id or ""):
            print(f"no trace for request {args.request_id!r} in the prediction log (was tracing on?)")
            return 1
        columns, rows, _ = run_query(
            channel,
            "SELECT span_id, parent_span_id, service, name, toUnixTimestamp64Micro(start) AS start_us, duration_ms "
            f"FROM predmesh.spans FINAL WHERE trace_id = '{trace_id}' ORDER BY start",
            timeout_s=args.timeout,
        )
    spans = [dict(zip(columns, row, strict=True)) for row in rows]
    print(f"trace {trace_id} (request {args.request_id}): {len(spans)} spans")
    for line in span_tree(spans):
        print(line)
    return 0 if spans else 1


def add_parser(sub: Any) -> None:
    trace = sub.add_parser("trace", help="span tree of one request (local traces in the analytics sink)")
    trace.add_argument("request_id")
    trace.add_argument("--trace-id", default="", help="skip the prediction-log lookup")
    trace.add_argument("--target", default="", help="sink host:port (default: the running mesh's)")
    trace.add_argument("--state-dir", default=".predmesh")
    trace.add_argument("--timeout", type=float, default=10.0, help="deadline (seconds)")
    trace.set_defaults(func=cmd_trace)
