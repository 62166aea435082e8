"""`predmesh rollout status|pause|resume|abort MODEL`: automated rollouts in the routing file.

status: the route's rollout block (state, step, weights) and its recorded decisions with
evidence (from the analytics sink, when one runs). pause: the controller stops evaluating
(weights stay). resume: evaluation restarts the current step's clock. abort: back to 100 %
stable, state `aborted`. Changes rewrite the routing file atomically under its lock, like the
controller does (predmesh/common/rollout.py); the gateways apply the new revision live.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from predmesh.common.rollout import ACTIVE, rewrite_routing, rollouts, set_rollout, set_weights, stable_version


def routing_path(args: argparse.Namespace) -> Path:
    return Path(args.routing) if args.routing else Path(args.state_dir) / "routing.yaml"


def change_state(path: Path, model: str, action: str, now_s: float | None = None) -> str:
    """Apply pause/resume/abort to `model`'s rollout; returns the new state (raises SystemExit when invalid)."""
    outcome: dict[str, str] = {}

    def change(document: dict[str, Any]) -> bool:
        spec = rollouts(document).get(model)
        if spec is None:
            raise SystemExit(f"error: model {model!r} has no rollout in {path}")
        if spec.state not in ACTIVE:
            raise SystemExit(f"error: the rollout of {model!r} is already {spec.state}")
        if action == "pause":
            spec = replace(spec, state="paused")
        elif action == "resume":
            spec = replace(spec, state="running", step_started_s=time.time() if now_s is None else now_s)
        else:
            set_weights(document, model, [(stable_version(document, model), 100.0)])
            spec = replace(spec, state="aborted")
        set_rollout(document, model, spec)
        outcome["state"] = spec.state
        return True

    rewrite_routing(path, change)
    return outcome["state"]


def cmd_rollout(args: argparse.Namespace) -> int:
    path = routing_path(args)
    if args.action != "status":
        state = change_state(path, args.model, args.action)
        print(f"rollout of {args.model}: {state}")
        return 0
    document = yaml.safe_load(path.read_text()) or {}
    spec = rollouts(document).get(args.model)
    if spec is None:
        print(f"model {args.model!r} has no rollout in {path}")
        return 1
    print(f"rollout of {args.model}: canary {spec.canary}, state {spec.state}, step {spec.step} ({spec.weight:g}%)")
    print(
        "versions: " + ", ".join(f"{v['version']}={v['weight']:g}%" for v in document["models"][args.model]["versions"])
    )
    try:
        from predmesh.cli.analytics import run_query, sink_channel

        model = args.model.replace("\\", "\\\\").replace("'", "\\'")
        sql = (
            "SELECT ts, action, step, weight, reason, evidence FROM predmesh.rollout_decisions "
            f"WHERE model = '{model}' ORDER BY ts DESC LIMIT {int(args.last)}"
        )
        with sink_channel(args.target, args.state_dir) as channel:
            _, rows, _ = run_query(channel, sql, timeout_s=args.timeout)
    except (SystemExit, Exception) as err:  # no sink running: the file is all there is
        print(f"(no decisions: analytics sink not reachable: {err})")
        return 0
    for ts, action, step, weight, reason, evidence in reversed(rows):
        print(f"{ts}  {action:8s} step {step} ({weight:g}%): {reason}")
        if args.evidence:
            print("    " + json.dumps(json.loads(evidence), sort_keys=True))
    return 0


def add_parser(sub: Any) -> None:
    rollout = sub.add_parser("rollout", help="automated canary rollouts (status, pause, resume, abort)")
    rollout.add_argument("action", choices=["status", "pause", "resume", "abort"])
    rollout.add_argument("model")
    rollout.add_argument("--routing", default="", help="routing file (default: <state-dir>/routing.yaml)")
    rollout.add_argument("--state-dir", default=".predmesh")
    rollout.add_argument("--target", default="", help="analytics sink host:port (status; default: the running mesh's)")
    rollout.add_argument("--last", type=int, default=20, help="decisions shown by status")
    rollout.add_argument("--evidence", action="store_true", help="status: print each decision's evidence")
    rollout.add_argument("--timeout", type=float, default=10.0, help="deadline (seconds)")
    rollout.set_defaults(func=cmd_rollout)
