"""`predmesh predict`: Predict (one entity) or PredictBatch (several) through the edge, with predmesh.client.

Prints every field of the answer (`degraded: false` included), as JSON (default) or a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from predmesh.cli.common import add_connection_args, client_options, default_target


def _context_value(text: str) -> tuple[str, bool | float | str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"context must be name=value, got {text!r}")
    name, raw = text.split("=", 1)
    low = raw.lower()
    if low in ("true", "false"):
        return name, low == "true"
    try:
        return name, float(raw)
    except ValueError:
        return name, raw


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for key, inner in value.items():
            rows += _flatten(inner, f"{prefix}.{key}" if prefix else key)
        return rows
    if isinstance(value, list):
        return [(prefix, ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in value))]
    return [(prefix, json.dumps(value) if not isinstance(value, str) else value)]


def table(answer: dict[str, Any]) -> str:
    """Two columns (field, value), nested fields dotted; a batch prints its own fields, then one block per result."""
    results = answer.get("results")
    blocks = [_flatten({k: v for k, v in answer.items() if k != "results"})]
    blocks += [_flatten(r) for r in results or []]
    width = max((len(k) for block in blocks for k, _ in block), default=0)
    return "\n\n".join("\n".join(f"{k.ljust(width)}  {v}" for k, v in block) for block in blocks if block)


def cmd_predict(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from predmesh.client import BatchItem, Client, PredmeshClientError

    context = dict(args.context or [])
    target = args.target or default_target(args.state_dir)
    with Client(target, **client_options(target, args)) as client:
        try:
            if len(args.entity) == 1:
                raw = client.predict(args.model, args.entity[0], context, version=args.version).raw
            else:
                items = [BatchItem(e, context) for e in args.entity]
                raw = client.predict_batch(args.model, items, version=args.version).raw
        except PredmeshClientError as err:
            print(f"error: {err.code.name}: {err.message}", file=sys.stderr)
            return 1
    answer = MessageToDict(raw, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    print(table(answer) if args.output == "table" else json.dumps(answer, indent=2))
    return 0


def add_parser(sub: Any) -> None:
    predict = sub.add_parser("predict", help="call Predict (one entity) or PredictBatch (several)")
    add_connection_args(predict)
    predict.add_argument("--model", required=True)
    predict.add_argument("--version", default="")
    predict.add_argument("--entity", nargs="+", required=True, help="entity id(s)")
    predict.add_argument("--context", nargs="*", type=_context_value, help="request features name=value")
    predict.add_argument("--output", choices=("json", "table"), default="json", help="every field, as JSON or a table")
    predict.set_defaults(func=cmd_predict)
