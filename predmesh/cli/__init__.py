"""The `predmesh` command line: run the local mesh and talk to it.

One module per command group; each has `add_parser(sub)` and sets `func` on its parsers.
A new command group is a new module plus one line in `COMMANDS`.

predmesh up                      start Redis, the services, demo features and models on loopback
predmesh status                  every process of the running mesh: pid, uptime, restarts, health
predmesh predict --model fraud --entity u00042 --context amount=120.5 channel=web
predmesh features load --redis-url URL --entity-type user [--registry PATH] FILE   (default: demo registry)
predmesh features load --redis-url URL --demo 1000
predmesh features push --entity-type user --entity-id u00042 avg_txn_amount_30d=120.5   (feature events to Kafka)
predmesh logs tail ...           print prediction events from Kafka (when the logger runs)
predmesh analytics query "SQL"   read-only SQL over the analytics store (when the sink runs)
predmesh rollout status|pause|resume|abort MODEL   automated canary rollouts
predmesh trace REQUEST_ID        span tree of one request (local traces in the sink)
predmesh report MODEL --out report.html   static HTML charts: scores, drift, canary vs stable, rollouts
predmesh outcomes push FILE      record outcomes (CSV or JSON lines: request_id, model, label/value)
predmesh batch score in.parquet --model fraud --out out.parquet   resumable batch scoring (PredictBatch, batch lane)
predmesh capacity --rps 100000 --features 50    pods, Redis shards, Kafka partitions for a load
predmesh topics ensure --bootstrap-servers B --spec JSON|@file   create/grow Kafka topics (Helm hook Job)
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Sequence

from predmesh.cli.common import STATE_FILE, running_mesh

__all__ = ["COMMANDS", "STATE_FILE", "build_parser", "main", "running_mesh"]

# modules under predmesh.cli (or elsewhere) with an add_parser(sub); imported when the parser is built
COMMANDS = (
    "predmesh.cli.mesh",
    "predmesh.cli.predict",
    "predmesh.cli.features",
    "predmesh.optimize",
    "predmesh.cli.logs",
    "predmesh.cli.analytics",
    "predmesh.cli.rollout",
    "predmesh.cli.outcomes",
    "predmesh.cli.trace",
    "predmesh.cli.report",
    "predmesh.cli.batch",
    "predmesh.cli.capacity",
    "predmesh.cli.topics",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predmesh", description="predmesh: real-time ML inference mesh")
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args))
