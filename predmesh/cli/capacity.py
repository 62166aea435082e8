"""`predmesh capacity`: pods, Redis shards and Kafka partitions/brokers for a prediction rate.

    predmesh capacity --rps 100000 --features 50 [--profile coalesced|unary] [--cache-hit 0.3]

Prints the table and the arithmetic of `predmesh.capacity` (derivation: docs/CAPACITY.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from predmesh.capacity import PROFILES, Inputs, plan, render

COSTS = ("edge", "gateway", "features", "orchestrator", "logger")


def parse_cost(text: str) -> tuple[str, float]:
    """`logger=250` -> ("logger_us", 250.0): a measured CPU cost per prediction replacing the profile's."""
    name, sep, value = text.partition("=")
    try:
        us = float(value)
    except ValueError:
        us = -1.0
    if not sep or name not in COSTS or us < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PROCESS=MICROSECONDS with PROCESS one of {COSTS}")
    return f"{name}_us", us


def cmd_capacity(args: argparse.Namespace) -> int:
    profile = PROFILES[args.profile]
    if args.cost:
        profile = dataclasses.replace(profile, name=f"{profile.name}+overrides", **dict(args.cost))
    inputs = Inputs(
        rps=args.rps,
        features=args.features,
        profile=profile,
        target_utilization=args.utilization,
        cache_hit=args.cache_hit,
        shadow_fraction=args.shadow,
        log_features_sample=args.log_features_sample,
        retention_h=args.retention_h,
    )
    try:
        result = plan(inputs)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if args.json:
        doc = dataclasses.asdict(result)
        doc["inputs"]["profile"] = inputs.profile.name
        print(json.dumps(doc, indent=2))
    else:
        print(render(result))
    return 0


def add_parser(sub: Any) -> None:
    cap = sub.add_parser("capacity", help="pods, Redis shards, Kafka partitions/brokers for a prediction rate")
    cap.add_argument("--rps", type=float, required=True, help="predictions per second")
    cap.add_argument("--features", type=int, default=50, help="stored features per entity (default 50)")
    cap.add_argument("--profile", choices=sorted(PROFILES), default="coalesced", help="measured CPU costs to use")
    cap.add_argument("--utilization", type=float, default=0.5, help="target CPU share per process (default 0.5)")
    cap.add_argument("--cache-hit", type=float, default=0.0, help="share of entities from the local cache")
    cap.add_argument("--shadow", type=float, default=0.1, help="share of predictions also scored by a shadow")
    cap.add_argument("--log-features-sample", type=float, default=0.0, help="share of events carrying features")
    cap.add_argument("--retention-h", type=float, default=24.0, help="Kafka retention (hours)")
    cap.add_argument(
        "--cost",
        type=parse_cost,
        action="append",
        metavar="PROCESS=US",
        help="replace a profile's CPU us per prediction (edge, gateway, features, orchestrator, logger); repeatable",
    )
    cap.add_argument("--json", action="store_true", help="print the plan as JSON")
    cap.set_defaults(func=cmd_capacity)
