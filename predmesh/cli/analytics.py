"""`predmesh analytics query "SQL"`: read-only SQL over the analytics store (the sink's AnalyticsService).

Tables (database `predmesh`): predictions, shadow_predictions, outcomes, rollout_decisions
(services/sink/core/schema.py); read them with FINAL to see redelivered events once. Example:

    predmesh analytics query "SELECT model_version, arm, count() FROM predmesh.predictions FINAL GROUP BY ALL"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from predmesh.cli.common import running_mesh

SINK_KEY = "analytics sink (gRPC AnalyticsService)"


def sink_channel(target: str, state_dir: str) -> Any:
    """A channel to the sink: --target or the running mesh's sink; mTLS with the operator
    certificate of the state dir when the mesh has one, else plaintext."""
    import grpc

    if not target:
        state = running_mesh(state_dir)
        if SINK_KEY not in state:
            raise SystemExit("error: the running mesh has no analytics sink (start it with the sink enabled)")
        target = str(state[SINK_KEY])
    pki = Path(state_dir) / "pki"
    if (pki / "operator.crt").exists():
        creds = grpc.ssl_channel_credentials(
            (pki / "ca.crt").read_bytes(), (pki / "operator.key").read_bytes(), (pki / "operator.crt").read_bytes()
        )
        return grpc.secure_channel(target, creds)
    return grpc.insecure_channel(target)


def run_query(channel: Any, sql: str, max_rows: int = 0, timeout_s: float = 30.0) -> tuple[list[str], list[Any], bool]:
    from predmesh.v1 import analytics_pb2, analytics_pb2_grpc

    stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
    reply = stub.Query(analytics_pb2.QueryRequest(sql=sql, max_rows=max_rows), timeout=timeout_s)
    return list(reply.columns), json.loads(reply.rows_json or "[]"), reply.truncated


def cmd_query(args: argparse.Namespace) -> int:
    import grpc

    try:
        with sink_channel(args.target, args.state_dir) as channel:
            columns, rows, truncated = run_query(channel, args.sql, args.max_rows, args.timeout)
    except grpc.RpcError as err:
        print(f"error: {err.code().name}: {err.details()}")
        return 1
    if args.format == "json":
        print(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2))
    else:
        print("\t".join(columns))
        for row in rows:
            print("\t".join("" if v is None else str(v) for v in row))
    if truncated:
        print(f"(truncated at {len(rows)} rows)")
    return 0


def add_parser(sub: Any) -> None:
    analytics = sub.add_parser("analytics", help="SQL over the prediction-log analytics store")
    actions = analytics.add_subparsers(dest="action", required=True)
    query = actions.add_parser("query", help="run one read-only SQL statement")
    query.add_argument("sql")
    query.add_argument("--format", choices=["tsv", "json"], default="tsv")
    query.add_argument("--max-rows", type=int, default=0, help="0 = the sink's limit")
    query.add_argument("--target", default="", help="sink host:port (default: the running mesh's)")
    query.add_argument("--state-dir", default=".predmesh")
    query.add_argument("--timeout", type=float, default=30.0, help="deadline (seconds)")
    query.set_defaults(func=cmd_query)
