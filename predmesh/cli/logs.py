"""`predmesh logs tail`: print prediction events from Kafka."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from predmesh.cli.common import running_mesh


def cmd_logs_tail(rest: Sequence[str], state_dir: str) -> int:
    from services.logger.tail import main as tail_main

    args = list(rest)
    if "--state-dir" in args:  # accepted after `tail` too
        at = args.index("--state-dir")
        state_dir, args = (args[at + 1] if at + 1 < len(args) else state_dir), args[:at] + args[at + 2 :]
    explicit = any(a == "--bootstrap" or a.startswith("--bootstrap=") for a in args)
    if not explicit and "-h" not in args and "--help" not in args:
        state = running_mesh(state_dir)
        bootstrap = state.get("kafka (tansu) bootstrap")
        if not bootstrap:
            raise SystemExit("error: the running mesh has no Kafka broker (it runs without the logger)")
        args = ["--bootstrap", str(bootstrap), *args]
    from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS

    return int(tail_main(args, overrides=DEV_CONSUMER_TIMEOUTS) or 0)


def add_parser(sub: Any) -> None:
    logs = sub.add_parser("logs", help="prediction log tools")
    logs.add_argument("action", choices=["tail"])
    logs.add_argument("--state-dir", default=".predmesh", help="where `predmesh up` keeps mesh.json")
    logs.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the tail (see --help after 'tail')")
    logs.set_defaults(func=lambda args: cmd_logs_tail(args.rest, args.state_dir))
