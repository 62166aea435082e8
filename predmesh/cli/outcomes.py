"""`predmesh outcomes push FILE`: record outcomes from a CSV or JSON-lines file.

Each row/line names `request_id`, `model` and a `label` and/or numeric `value` (optional
`event_time`: unix seconds or ISO 8601). Every row is one OutcomeService.RecordOutcome call to
the edge (or --target), authenticated with the API key like `predmesh predict`; rows that fail
are reported with their line number and the rest still go out. Exit status 1 when any failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from predmesh.cli.common import add_connection_args, api_key, default_target, open_channel


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) from a .csv file (header row) or JSON lines (anything else)."""
    with path.open(newline="") as src:
        if path.suffix.lower() == ".csv":
            for n, row in enumerate(csv.DictReader(src), start=2):
                yield n, {k: v for k, v in row.items() if v not in (None, "")}
        else:
            for n, line in enumerate(src, start=1):
                if line.strip():
                    yield n, json.loads(line)


def to_request(row: dict[str, Any]) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    from predmesh.v1 import outcomes_pb2

    request = outcomes_pb2.RecordOutcomeRequest(
        request_id=str(row.get("request_id", "")), model=str(row.get("model", "")), label=str(row.get("label", ""))
    )
    if row.get("value") is not None:
        request.value = float(row["value"])
    when = row.get("event_time")
    if when not in (None, ""):
        seconds = float(when) if isinstance(when, int | float) else _parse_time(str(when))
        ts = Timestamp()
        ts.FromNanoseconds(int(seconds * 1e9))
        request.event_time.CopyFrom(ts)
    return request


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


def cmd_push(args: argparse.Namespace) -> int:
    import grpc

    from predmesh.v1 import outcomes_pb2_grpc

    target = args.target or default_target(args.state_dir)
    key = api_key(args)
    metadata = [("x-api-key", key)] if key else []
    sent = failed = 0
    with open_channel(target, args) as channel:
        stub = outcomes_pb2_grpc.OutcomeServiceStub(channel)
        for line, row in read_rows(Path(args.file)):
            try:
                stub.RecordOutcome(to_request(row), metadata=metadata, timeout=args.timeout)
                sent += 1
            except (ValueError, TypeError) as err:
                failed += 1
                print(f"line {line}: {err}", file=sys.stderr)
            except grpc.RpcError as err:
                failed += 1
                print(f"line {line}: {err.code().name}: {err.details()}", file=sys.stderr)
    print(f"{sent} outcomes recorded, {failed} failed")
    return 1 if failed else 0


def add_parser(sub: Any) -> None:
    outcomes = sub.add_parser("outcomes", help="record what predictions turned out to be")
    actions = outcomes.add_subparsers(dest="action", required=True)
    push = actions.add_parser("push", help="RecordOutcome for every row of a CSV / JSON-lines file")
    push.add_argument("file")
    add_connection_args(push)
    push.set_defaults(func=cmd_push)
