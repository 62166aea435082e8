"""`predmesh features load|push`: bulk-load stored features into Redis, or send feature events to Kafka.

predmesh features load --redis-url URL --entity-type user [--registry PATH] FILE
predmesh features push --entity-type user --entity-id u00042 avg_txn_amount_30d=120.5 country=FR [--event-time-ms N]
predmesh features push --file events.jsonl     (one JSON object a line:
    {"entity_type": "user", "entity_id": "u1", "event_time_ms": 1700000000000, "values": {"avg_txn_amount_30d": 1.5}})

`push` produces `FeatureEvent`s to `feature-events` on the running mesh's broker (or
--bootstrap-servers); the ingestion service validates them and writes Redis.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from predmesh.cli.common import running_mesh


def cmd_features_load(rest: Sequence[str]) -> int:
    """The service's loader, with the demo registry unless `--registry` is given; `--demo N` loads demo users."""
    args = list(rest)
    if any(a == "--demo" or a.startswith("--demo=") for a in args):
        from predmesh.demo.load import main as demo_main

        return demo_main(args)
    from predmesh.demo import FEATURE_REGISTRY
    from services.features.loader import main as loader_main

    if not any(a == "--registry" or a.startswith("--registry=") for a in args):
        args = ["--registry", str(FEATURE_REGISTRY), *args]
    return loader_main(args)


def _value(text: str) -> tuple[str, bool | float | str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"values must be name=value, got {text!r}")
    name, raw = text.split("=", 1)
    if raw.lower() in ("true", "false"):
        return name, raw.lower() == "true"
    try:
        return name, float(raw)
    except ValueError:
        return name, raw


def _push_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predmesh features push", description="Send feature events to Kafka.")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (default: the running mesh's broker)")
    parser.add_argument("--state-dir", default=".predmesh", help="where `predmesh up` keeps mesh.json")
    parser.add_argument("--topic", default=None, help="topic (default: feature-events)")
    parser.add_argument("--entity-type", default="user")
    parser.add_argument("--entity-id", help="entity of the values given on the command line")
    parser.add_argument("--event-time-ms", type=int, default=None, help="event time, Unix ms (default: now)")
    parser.add_argument("--file", type=Path, help="JSON-lines file of events (see `predmesh features --help`)")
    parser.add_argument("values", nargs="*", type=_value, help="name=value of the entity's stored features")
    return parser


def _events_from_file(path: Path) -> Iterator[Any]:
    from predmesh.clients.featureevents import feature_event

    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield feature_event(
                    str(row["entity_type"]),
                    str(row["entity_id"]),
                    dict(row["values"]),
                    int(row["event_time_ms"]) if row.get("event_time_ms") is not None else None,
                    source="predmesh features push",
                )
            except (ValueError, KeyError, TypeError) as err:
                raise SystemExit(f"error: {path}:{number}: not a feature event ({type(err).__name__}: {err})") from None


def cmd_features_push(rest: Sequence[str]) -> int:
    from predmesh.clients.featureevents import (
        FEATURE_EVENTS_TOPIC,
        FeatureEventProducer,
        ProduceError,
        feature_event,
    )

    args = _push_parser().parse_args(list(rest))
    if (args.file is None) == (args.entity_id is None):
        raise SystemExit("error: give either --file or --entity-id with name=value pairs")
    if args.entity_id is not None and not args.values:
        raise SystemExit("error: --entity-id needs at least one name=value")
    bootstrap = args.bootstrap_servers or running_mesh(args.state_dir).get("kafka (tansu) bootstrap")
    if not bootstrap:
        raise SystemExit("error: the running mesh has no Kafka broker (give --bootstrap-servers)")
    producer = FeatureEventProducer(str(bootstrap), args.topic or FEATURE_EVENTS_TOPIC)
    if args.file is not None:
        events = _events_from_file(args.file)
    else:
        events = iter(
            [feature_event(args.entity_type, args.entity_id, dict(args.values), args.event_time_ms, "predmesh cli")]
        )
    sent = 0
    for event in events:
        producer.send(event)
        sent += 1
    try:
        producer.flush(30.0)
    except ProduceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"sent {sent} feature event(s) to {args.topic or FEATURE_EVENTS_TOPIC}")
    return 0


def add_parser(sub: Any) -> None:
    features = sub.add_parser("features", help="feature store tools (load files into Redis, push feature events)")
    features.add_argument("action", choices=["load", "push"])
    features.add_argument("rest", nargs=argparse.REMAINDER)
    features.set_defaults(
        func=lambda args: cmd_features_push(args.rest) if args.action == "push" else cmd_features_load(args.rest)
    )
