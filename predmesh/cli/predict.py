"""`predmesh predict`: Predict (one entity) or PredictBatch (several) through the edge."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from predmesh.cli.common import add_connection_args, api_key, default_target, open_channel


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


def cmd_predict(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from predmesh.common.values import scalar_to_value
    from predmesh.v1 import prediction_pb2, prediction_pb2_grpc

    context = {name: scalar_to_value(v) for name, v in (args.context or [])}
    target = args.target or default_target(args.state_dir)
    key = api_key(args)
    metadata = [("x-api-key", key)] if key else []
    with open_channel(target, args) as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        try:
            if len(args.entity) == 1:
                response = stub.Predict(
                    prediction_pb2.PredictRequest(
                        model=args.model, version=args.version, entity_id=args.entity[0], context=context
                    ),
                    timeout=args.timeout,
                    metadata=metadata,
                )
            else:
                response = stub.PredictBatch(
                    prediction_pb2.PredictBatchRequest(
                        model=args.model,
                        version=args.version,
                        items=[prediction_pb2.BatchItem(entity_id=e, context=context) for e in args.entity],
                    ),
                    timeout=args.timeout,
                    metadata=metadata,
                )
        except grpc.RpcError as err:
            print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
    print(json.dumps(MessageToDict(response, preserving_proto_field_name=True), indent=2))
    return 0


def add_parser(sub: Any) -> None:
    predict = sub.add_parser("predict", help="call Predict (one entity) or PredictBatch (several)")
    add_connection_args(predict)
    predict.add_argument("--model", required=True)
    predict.add_argument("--version", default="")
    predict.add_argument("--entity", nargs="+", required=True, help="entity id(s)")
    predict.add_argument("--context", nargs="*", type=_context_value, help="request features name=value")
    predict.set_defaults(func=cmd_predict)
