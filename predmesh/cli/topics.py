"""`predmesh topics ensure`: create or grow Kafka topics to a declared spec.

    predmesh topics ensure --bootstrap-servers kafka:9092 --spec '[{"name": "predictions",
        "partitions": 12, "replicationFactor": 3, "config": {"retention.ms": "604800000"}}]'

`--spec` is JSON text or `@file`; each option falls back to an env var (`PREDMESH_TOPICS_SPEC`,
`PREDMESH_TOPICS_BOOTSTRAP_SERVERS`, `PREDMESH_TOPICS_KAFKA_EXTRA`: a JSON object of librdkafka
properties for SASL/TLS), which is how the Helm chart's provisioning hook Job runs it. Prints one
line per topic (`predmesh.clients.kafkatopics`); exit status 1 when any action failed, 2 on a bad spec.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from predmesh.clients.kafkatopics import ensure_topics, parse_specs, report


def _text(value: str) -> str:
    return Path(value[1:]).read_text() if value.startswith("@") else value


def cmd_ensure(args: argparse.Namespace) -> int:
    bootstrap = args.bootstrap_servers or os.environ.get("PREDMESH_TOPICS_BOOTSTRAP_SERVERS", "")
    raw_spec = args.spec or os.environ.get("PREDMESH_TOPICS_SPEC", "")
    raw_extra = args.kafka_extra or os.environ.get("PREDMESH_TOPICS_KAFKA_EXTRA", "") or "{}"
    if not bootstrap or not raw_spec:
        print("error: --bootstrap-servers and --spec (or PREDMESH_TOPICS_*) are required")
        return 2
    try:
        specs = parse_specs(_text(raw_spec))
        extra = json.loads(_text(raw_extra))
        if not isinstance(extra, dict):
            raise ValueError("--kafka-extra: expected a JSON object")
    except (ValueError, OSError) as err:
        print(f"error: {err}")
        return 2
    config: dict[str, Any] = {**{str(k): v for k, v in extra.items()}, "bootstrap.servers": bootstrap}
    lines, ok = report(ensure_topics(config, specs, timeout_s=args.timeout_s))
    for line in lines:
        print(line)
    return 0 if ok else 1


def add_parser(sub: Any) -> None:
    topics = sub.add_parser("topics", help="Kafka topics: create or grow them to a declared spec")
    tsub = topics.add_subparsers(dest="topics_command", required=True)
    ensure = tsub.add_parser("ensure", help="create missing topics, add partitions, set declared configs")
    ensure.add_argument("--bootstrap-servers", default="", help="env PREDMESH_TOPICS_BOOTSTRAP_SERVERS")
    ensure.add_argument("--spec", default="", help="JSON list of topics, or @file (env PREDMESH_TOPICS_SPEC)")
    ensure.add_argument(
        "--kafka-extra", default="", help="JSON librdkafka properties (env PREDMESH_TOPICS_KAFKA_EXTRA)"
    )
    ensure.add_argument("--timeout-s", type=float, default=30.0, help="per admin request (seconds)")
    ensure.set_defaults(func=cmd_ensure)
