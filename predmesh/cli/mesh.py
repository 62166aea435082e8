"""`predmesh up` (run the local mesh) and `predmesh status` (its processes)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

from predmesh.cli.common import STATE_FILE, STATUS_STALE_S, running_mesh


def up_options(args: argparse.Namespace) -> Any:
    """The MeshOptions `predmesh up` runs with: the whole mesh, i.e. besides the request path also the
    analytics sink (embedded ClickHouse, local traces for `predmesh trace`, rollout controller), streaming
    feature ingestion, durable PredictAsync + polling, the prediction cache's shared level and
    server-side batch jobs (files under <state>/batch)."""
    from predmesh.local.mesh import MeshOptions

    return MeshOptions(
        state_dir=Path(args.state_dir),
        demo_users=args.users,
        gateway_port=args.gateway_port,
        edge_tls=not args.plaintext_edge,
        auth=not args.anonymous,
        redis_cluster=args.redis_cluster,
        gateway_replicas=args.replicas.get("gateway", 1),
        features_replicas=args.replicas.get("features", 1),
        inference_replicas=args.replicas.get("inference", 1),
        with_sink=True,
        with_ingest=True,
        with_async_queue=True,
        with_cache=True,
        with_batch_jobs=True,
        background_tier=args.background_tier,
    )


def cmd_up(args: argparse.Namespace) -> int:
    from predmesh.local.mesh import LocalMesh

    mesh = LocalMesh(up_options(args))
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
        if mesh.batch_jobs_on:
            batch = mesh.batch_dir
            print(f"  predmesh batch submit {batch}/in.parquet --model fraud --out {batch}/out.parquet --wait")
        print("\nCtrl-C stops everything.", flush=True)
        stop.wait()
        print("predmesh: stopping...", flush=True)
        state_file.unlink(missing_ok=True)
    return 0


REPLICATED = ("gateway", "features", "inference")


def parse_replicas(text: str) -> dict[str, int]:
    """`gateway=2,features=2` -> {"gateway": 2, "features": 2} (argparse type: bad input is a usage error)."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, count = part.partition("=")
        if not sep or name not in REPLICATED or not count.isdigit() or not 1 <= int(count) <= 16:
            raise argparse.ArgumentTypeError(
                f"{part!r}: expected SERVICE=N with SERVICE one of {', '.join(REPLICATED)} and N in 1..16"
            )
        out[name] = int(count)
    return out


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


def add_parser(sub: Any) -> None:
    up = sub.add_parser(
        "up",
        help="run the whole mesh locally on loopback (Ctrl-C stops it)",
        description="Run the whole mesh locally on loopback (Ctrl-C stops it). Server-side batch jobs "
        "(`predmesh batch submit`) are on, with their state in the mesh's Redis (or Redis Cluster) and files "
        "only under <state-dir>/batch/ (the gateway's one allowed root).",
    )
    up.add_argument("--state-dir", default=".predmesh", help="models, logs and mesh.json go here")
    up.add_argument("--users", type=int, default=1000, help="demo users loaded into Redis")
    up.add_argument("--gateway-port", type=int, default=0, help="gateway port (0 = free port)")
    up.add_argument("--plaintext-edge", action="store_true", help="serve the edge without TLS (development only)")
    up.add_argument("--anonymous", action="store_true", help="no API key needed (development only)")
    up.add_argument(
        "--redis-cluster", action="store_true", help="features on a local Redis Cluster (3 masters + 3 replicas)"
    )
    up.add_argument(
        "--background-tier",
        action="store_true",
        help="batch jobs and async requests scored by a gateway, features and orchestrator of their own at nice 19"
        " (the real-time path's processes get the CPU first)",
    )
    up.add_argument(
        "--replicas",
        type=parse_replicas,
        default={},
        metavar="SERVICE=N,...",
        help="processes per service, e.g. gateway=2,features=2,inference=2 (Envoy balances over the gateways,"
        " the gateways round-robin over features and inference replicas)",
    )
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="processes of the running mesh (exit 1: none runs, 2: not all healthy)")
    status.add_argument("--state-dir", default=".predmesh")
    status.add_argument("--json", action="store_true", help="print the supervisor's status document")
    status.set_defaults(func=cmd_status)
