"""`predmesh rollout status|pause|resume|abort MODEL`: automated rollouts in the live routing table.

status: the route's rollout block (state, step, weights) and its recorded decisions with
evidence (from the analytics sink, when one runs). pause: the controller stops evaluating
(weights stay). resume: evaluation restarts the current step's clock. abort: back to 100 %
stable, state `aborted`.

The table is read and changed through the same RoutingStore as the rollout controller's
(services/sink/core/routing_store.py): locally the routing file (`--routing`, default
<state-dir>/routing.yaml; rewritten atomically under its lock), in a cluster the routing ConfigMap
through the Kubernetes API (`--routing-configmap NAME`; a JSON merge patch conditional on the
resourceVersion read, re-read and re-applied on 409 Conflict, so neither a concurrent controller
decision nor this command's change is lost; the change is re-checked on the fresh table, e.g. an
abort of a rollout the controller has just rolled back fails with "already rolled_back").
Credentials: `--kube-token-file` / `--kube-ca-file` / `--kube-api-url` (e.g. a token from
`kubectl create token <sink service account>`), or the pod's service account when run inside the
cluster (`kubectl exec deploy/<release>-predmesh-sink -- predmesh rollout abort MODEL
--routing-configmap <release>-predmesh-routing`: the sink's Role may get and patch exactly that).
The gateways apply the new revision live either way.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from predmesh.common.rollout import ACTIVE, rollouts, set_rollout, set_weights, stable_version
from services.sink.core.routing_store import FileRoutingStore, RoutingStore

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def routing_path(args: argparse.Namespace) -> Path:
    return Path(args.routing) if args.routing else Path(args.state_dir) / "routing.yaml"


def routing_store(args: argparse.Namespace) -> RoutingStore:
    """The routing file, or the routing ConfigMap through the Kubernetes API (`--routing-configmap`)."""
    if not args.routing_configmap:
        return FileRoutingStore(routing_path(args))
    from services.sink.backends.kube_configmap import ConfigMapRoutingStore, KubeApi

    sa_dir = Path(args.kube_service_account_dir)
    try:
        if args.kube_token_file:  # from outside the cluster (e.g. `kubectl create token ...`)
            if not args.kube_api_url:
                raise SystemExit("error: --kube-api-url is required with --kube-token-file")
            ca = Path(args.kube_ca_file) if args.kube_ca_file else None
            api = KubeApi(args.kube_api_url, Path(args.kube_token_file), ca, args.timeout)
        else:  # inside a pod: its service account
            api = KubeApi.in_cluster(args.kube_api_url, sa_dir, args.timeout)
        namespace = args.namespace or (sa_dir / "namespace").read_text().strip()
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {err}") from err
    return ConfigMapRoutingStore(api, namespace, args.routing_configmap, args.routing_configmap_key)


def change_state(routing: Path | RoutingStore, model: str, action: str, now_s: float | None = None) -> str:
    """Apply pause/resume/abort to `model`'s rollout; returns the new state (raises SystemExit when invalid)."""
    store = FileRoutingStore(routing) if isinstance(routing, Path) else routing
    outcome: dict[str, str] = {}

    def change(document: dict[str, Any]) -> bool:
        spec = rollouts(document).get(model)
        if spec is None:
            raise SystemExit(f"error: model {model!r} has no rollout in {store!r}")
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

    store.rewrite(change)
    return outcome["state"]


def cmd_rollout(args: argparse.Namespace) -> int:
    from services.sink.errors import StoreUnavailable

    store = routing_store(args)
    try:
        if args.action != "status":
            state = change_state(store, args.model, args.action)
            print(f"rollout of {args.model}: {state}")
            return 0
        document = store.read()
    except StoreUnavailable as err:  # the Kubernetes API refused or failed (status in the message)
        raise SystemExit(f"error: {err.message}") from err
    spec = rollouts(document).get(args.model)
    if spec is None:
        print(f"model {args.model!r} has no rollout in {store!r}")
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
    rollout.add_argument(
        "--routing-configmap", default="", help="the routing ConfigMap's name: change it through the Kubernetes API"
    )
    rollout.add_argument("--routing-configmap-key", default="routing.yaml", help="key of the routing YAML in it")
    rollout.add_argument("--namespace", default="", help="the ConfigMap's namespace (default: the pod's)")
    rollout.add_argument("--kube-api-url", default="", help="https://host:port (default: in-cluster)")
    rollout.add_argument("--kube-token-file", default="", help="bearer token file (default: the pod's service account)")
    rollout.add_argument("--kube-ca-file", default="", help="CA of the API server (with --kube-token-file)")
    rollout.add_argument("--kube-service-account-dir", default=str(SA_DIR), help="in-cluster token, CA and namespace")
    rollout.add_argument("--state-dir", default=".predmesh")
    rollout.add_argument("--target", default="", help="analytics sink host:port (status; default: the running mesh's)")
    rollout.add_argument("--last", type=int, default=20, help="decisions shown by status")
    rollout.add_argument("--evidence", action="store_true", help="status: print each decision's evidence")
    rollout.add_argument("--timeout", type=float, default=10.0, help="deadline (seconds)")
    rollout.set_defaults(func=cmd_rollout)
