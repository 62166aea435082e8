"""Helpers shared by the CLI commands: the running mesh's state, channels, API keys."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "mesh.json"
STATUS_STALE_S = 10.0  # a status file older than this means the supervisor is gone


def pid_alive(pid: int) -> bool:
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
    if not isinstance(pid, int) or not pid_alive(pid):
        raise SystemExit(f"error: the mesh described by {path} is not running any more (start one with `predmesh up`)")
    return state


def default_target(state_dir: str) -> str:
    state = running_mesh(state_dir)
    if "target" not in state:
        raise SystemExit(f"error: {Path(state_dir) / STATE_FILE} names no target (restart `predmesh up`)")
    return str(state["target"])


def state_ca(state_dir: str) -> str:
    try:
        return str(json.loads((Path(state_dir) / STATE_FILE).read_text()).get("ca") or "")
    except (OSError, ValueError):
        return ""


def api_key(args: argparse.Namespace) -> str:
    """--api-key, else $PREDMESH_API_KEY, else the key `predmesh up` wrote into the state dir."""
    if args.api_key:
        return str(args.api_key)
    if os.environ.get("PREDMESH_API_KEY"):
        return os.environ["PREDMESH_API_KEY"]
    try:
        return (Path(args.state_dir) / "api-key").read_text().strip()
    except OSError:
        return ""


def open_channel(target: str, args: argparse.Namespace) -> Any:
    """A blocking channel for commands that call stubs directly: the client library's `Connection`
    built from the same arguments (`client_options`), so TLS choices are made in one place."""
    from predmesh.client import Connection

    return Connection(target, **client_options(target, args)).channel()


def client_options(target: str, args: argparse.Namespace) -> dict[str, Any]:
    """predmesh.client Connection options from the connection arguments: TLS unless --plaintext, trusting
    --cacert, else the running mesh's CA, else the system roots; --cert/--key for mutual TLS."""
    ca = "" if args.plaintext else (args.cacert or state_ca(args.state_dir))
    host = target.rsplit(":", 1)[0]
    return {
        "api_key": api_key(args),
        "plaintext": bool(args.plaintext),
        "ca_file": ca,
        "cert_file": args.cert or "",
        "key_file": args.key or "",
        "server_name": "localhost" if host in ("127.0.0.1", "[::1]") and ca else "",
        "timeout_s": args.timeout,
    }


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """--target, --state-dir, --api-key, TLS options and --timeout, as every client command takes them."""
    parser.add_argument("--target", help="edge or gateway host:port (default: the running `predmesh up`)")
    parser.add_argument("--state-dir", default=".predmesh")
    parser.add_argument("--api-key", default="", help="default: $PREDMESH_API_KEY or the state dir's api-key")
    parser.add_argument("--cacert", default="", help="CA file of the edge (default: the running mesh's CA)")
    parser.add_argument("--plaintext", action="store_true", help="no TLS (a plaintext gateway or edge)")
    parser.add_argument("--cert", default="", help="client certificate (mutual TLS, e.g. .predmesh/pki/operator.crt)")
    parser.add_argument("--key", default="", help="private key of --cert")
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline (seconds)")
