"""The `predmesh` command line: run the local mesh and talk to it.

predmesh up                      start Redis, the services, demo features and models on loopback
predmesh status                  every process of the running mesh: pid, uptime, restarts, health
predmesh predict --model fraud --entity u00042 --context amount=120.5 channel=web
predmesh features load --redis-url URL --entity-type user [--registry PATH] FILE   (default: demo registry)
predmesh features load --redis-url URL --demo 1000
predmesh logs tail ...           print prediction events from Kafka (when the logger runs)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STATE_FILE = "mesh.json"
STATUS_STALE_S = 10.0  # a status file older than this means the supervisor is gone


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_mesh(state_dir: str) -> dict[str, object]:
    """mesh.json of the `predmesh up` running on `state_dir`; exits 1 with a clear message when none runs."""
    path = Path(state_dir) / STATE_FILE
    try:
        state = dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        raise SystemExit(f"error: no running mesh found in {path} (start one with `predmesh up`)") from None
    pid = state.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        raise SystemExit(f"error: the mesh described by {path} is not running any more (start one with `predmesh up`)")
    return state


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


def cmd_up(args: argparse.Namespace) -> int:
    from predmesh.local.mesh import LocalMesh, MeshOptions

    options = MeshOptions(
        state_dir=Path(args.state_dir),
        demo_users=args.users,
        gateway_port=args.gateway_port,
        edge_tls=not args.plaintext_edge,
        auth=not args.anonymous,
    )
    mesh = LocalMesh(options)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("predmesh: starting the local mesh (first run trains the demo models)...", flush=True)
    state_file = mesh.state_dir / STATE_FILE
    with mesh:
        info = mesh.describe()
        state = {"target": mesh.edge_address, "ca": str(mesh.ca_path or ""), "pid": os.getpid(), **info}
        state_file.write_text(json.dumps(state, indent=2))
        print("predmesh is up:")
        for name, where in info.items():
            print(f"  {name:34s} {where}")
        if mesh.api_key:
            print(f"\nAPI key (also in {mesh.state_dir / 'api-key'}): {mesh.api_key}")
        print("\ntry (in another shell, after `. .venv/bin/activate`):")
        print("  predmesh predict --model fraud --entity u00042 --context amount=120.5 channel=web")
        curl = "curl -s"
        if mesh.ca_path:
            curl += f" --cacert {mesh.ca_path}"
        if mesh.api_key:
            curl += ' -H "x-api-key: $(cat ' + str(mesh.state_dir / "api-key") + ')"'
        url = f"{mesh.edge_scheme}://{'localhost' if mesh.ca_path else '127.0.0.1'}:{mesh.edge_port}/v1/predict"
        print(f'  {curl} -XPOST {url} -d \'{{"model":"fraud","entity_id":"u00042"}}\'')
        if mesh.broker is not None:
            print(f"  predmesh logs tail --bootstrap {mesh.bootstrap_servers} --from-beginning --max-messages 5")
        print("\nCtrl-C stops everything.", flush=True)
        stop.wait()
        print("predmesh: stopping...", flush=True)
        state_file.unlink(missing_ok=True)
    return 0


def _default_target(state_dir: str) -> str:
    state = running_mesh(state_dir)
    if "target" not in state:
        raise SystemExit(f"error: {Path(state_dir) / STATE_FILE} names no target (restart `predmesh up`)")
    return str(state["target"])


def cmd_status(args: argparse.Namespace) -> int:
    """Print every supervised process of the running mesh; exit 1 when none runs."""
    import time

    from predmesh.local.supervisor import STATUS_FILE

    running_mesh(args.state_dir)
    path = Path(args.state_dir) / STATUS_FILE
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        raise SystemExit(f"error: the mesh runs without a supervisor status file ({path})") from None
    age = time.time() - float(status.get("updated_at", 0))
    if age > STATUS_STALE_S:
        raise SystemExit(f"error: {path} was last updated {age:.0f}s ago: the supervisor is not running")
    procs = status.get("processes", [])
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(f"{'process':16s} {'pid':>8s} {'state':9s} {'uptime':>9s} {'restarts':>8s} {'last exit':>9s} health")
        for p in procs:
            last = "" if p.get("last_exit") is None else str(p["last_exit"])
            print(
                f"{p['name']:16s} {p.get('pid') or '-':>8} {p['state']:9s} {p.get('uptime_s', 0):>8.0f}s "
                f"{p.get('restarts', 0):>8d} {last:>9s} {p.get('health', 'UNKNOWN')}"
            )
    healthy = all(p.get("state") == "running" and p.get("health") == "SERVING" for p in procs)
    return 0 if healthy else 2


def _state_ca(state_dir: str) -> str:
    try:
        return str(json.loads((Path(state_dir) / STATE_FILE).read_text()).get("ca") or "")
    except (OSError, ValueError):
        return ""


def _api_key(args: argparse.Namespace) -> str:
    """--api-key, else $PREDMESH_API_KEY, else the key `predmesh up` wrote into the state dir."""
    import os

    if args.api_key:
        return str(args.api_key)
    if os.environ.get("PREDMESH_API_KEY"):
        return os.environ["PREDMESH_API_KEY"]
    try:
        return (Path(args.state_dir) / "api-key").read_text().strip()
    except OSError:
        return ""


def _open_channel(target: str, args: argparse.Namespace) -> Any:
    """TLS unless --plaintext: trusting --cacert, else the running mesh's CA, else the system roots."""
    import grpc

    if args.plaintext:
        return grpc.insecure_channel(target)
    ca = args.cacert or _state_ca(args.state_dir)
    roots = Path(ca).read_bytes() if ca else None
    host = target.rsplit(":", 1)[0]
    options = [("grpc.ssl_target_name_override", "localhost")] if host in ("127.0.0.1", "[::1]") and ca else []
    key = Path(args.key).read_bytes() if args.key else None
    chain = Path(args.cert).read_bytes() if args.cert else None  # mutual TLS (e.g. the operator's certificate)
    creds = grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)
    return grpc.secure_channel(target, creds, options=options)


def cmd_predict(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from predmesh.common.values import scalar_to_value
    from predmesh.v1 import prediction_pb2, prediction_pb2_grpc

    context = {name: scalar_to_value(v) for name, v in (args.context or [])}
    target = args.target or _default_target(args.state_dir)
    key = _api_key(args)
    metadata = [("x-api-key", key)] if key else []
    with _open_channel(target, args) as channel:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predmesh", description="predmesh: real-time ML inference mesh")
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole mesh locally on loopback (Ctrl-C stops it)")
    up.add_argument("--state-dir", default=".predmesh", help="models, logs and mesh.json go here")
    up.add_argument("--users", type=int, default=1000, help="demo users loaded into Redis")
    up.add_argument("--gateway-port", type=int, default=0, help="gateway port (0 = free port)")
    up.add_argument("--plaintext-edge", action="store_true", help="serve the edge without TLS (development only)")
    up.add_argument("--anonymous", action="store_true", help="no API key needed (development only)")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="processes of the running mesh (exit 1: none runs, 2: not all healthy)")
    status.add_argument("--state-dir", default=".predmesh")
    status.add_argument("--json", action="store_true", help="print the supervisor's status document")
    status.set_defaults(func=cmd_status)

    predict = sub.add_parser("predict", help="call Predict (one entity) or PredictBatch (several)")
    predict.add_argument("--target", help="edge or gateway host:port (default: the running `predmesh up`)")
    predict.add_argument("--state-dir", default=".predmesh")
    predict.add_argument("--model", required=True)
    predict.add_argument("--version", default="")
    predict.add_argument("--entity", nargs="+", required=True, help="entity id(s)")
    predict.add_argument("--context", nargs="*", type=_context_value, help="request features name=value")
    predict.add_argument("--api-key", default="", help="default: $PREDMESH_API_KEY or the state dir's api-key")
    predict.add_argument("--cacert", default="", help="CA file of the edge (default: the running mesh's CA)")
    predict.add_argument("--plaintext", action="store_true", help="no TLS (a plaintext gateway or edge)")
    predict.add_argument("--cert", default="", help="client certificate (mutual TLS, e.g. .predmesh/pki/operator.crt)")
    predict.add_argument("--key", default="", help="private key of --cert")
    predict.add_argument("--timeout", type=float, default=5.0, help="deadline (seconds)")
    predict.set_defaults(func=cmd_predict)

    features = sub.add_parser("features", help="feature store tools")
    features.add_argument("action", choices=["load"])
    features.add_argument("rest", nargs=argparse.REMAINDER)

    from predmesh.optimize import add_parser as add_optimize

    add_optimize(sub)

    logs = sub.add_parser("logs", help="prediction log tools")
    logs.add_argument("action", choices=["tail"])
    logs.add_argument("--state-dir", default=".predmesh", help="where `predmesh up` keeps mesh.json")
    logs.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the tail (see --help after 'tail')")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "features":
        return cmd_features_load(args.rest)
    if args.command == "logs":
        return cmd_logs_tail(args.rest, args.state_dir)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
