"""Start the peer systems as processes from their own venvs (`.predmesh/bench/venvs/<peer>`).

Each class is a `predmesh.local.procs.ManagedProcess`: started with its log in its
workdir, ready when its health endpoint answers, stopped with SIGTERM (SIGKILL after a
timeout). `venv_python(peer)` raises `PeerMissing` with the setup command when a venv is
not there, so a scenario can report the peer as not run instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from predmesh.local.procs import ManagedProcess, free_port

PEERS_DIR = Path(__file__).resolve().parent
ROOT = PEERS_DIR.parent.parent
VENVS = Path(os.environ.get("PREDMESH_BENCH_VENVS") or ROOT / ".predmesh" / "bench" / "venvs")


class PeerMissing(RuntimeError):
    pass


def venv_bin(peer: str, exe: str = "python") -> Path:
    path = VENVS / peer / "bin" / exe
    if not (VENVS / peer / ".predmesh-bench-ok").exists() or not path.exists():
        raise PeerMissing(f"{peer} venv missing: run `bash bench/setup_peers.sh {peer}`")
    return path


def _http_ok(url: str, timeout: float = 0.5) -> bool:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bool(resp.status == 200)


class MLServerProcess(ManagedProcess):
    """MLServer 1.7 serving one ONNX model through bench/peers/mlserver_onnx.py (gRPC + REST)."""

    name = "mlserver"
    ready_timeout_s = 60.0

    def __init__(self, model_path: Path, model_name: str, version: str, workdir: Path) -> None:
        super().__init__(workdir, {"PYTHONPATH": str(PEERS_DIR)})
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.model_name = model_name
        settings = {
            "debug": False,
            "host": "127.0.0.1",
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port,
            "parallel_workers": 0,  # run predict in the server process, like predmesh's orchestrator
        }
        (workdir / "settings.json").write_text(json.dumps(settings))
        model_dir = workdir / model_name
        model_dir.mkdir(parents=True, exist_ok=True)
        model_settings = {
            "name": model_name,
            "implementation": "mlserver_onnx.OnnxModel",
            "parameters": {
                "uri": str(model_path),
                "version": version,
                "extra": {"input": "input", "output": "probabilities", "intra_op_threads": 1},
            },
        }
        (model_dir / "model-settings.json").write_text(json.dumps(model_settings))

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> Sequence[str]:
        return [str(venv_bin("mlserver", "mlserver")), "start", str(self.workdir)]

    def ready(self) -> bool:
        return _http_ok(f"http://127.0.0.1:{self.http_port}/v2/models/{self.model_name}/ready")


class FastAPIProcess(ManagedProcess):
    """The naive FastAPI + uvicorn baseline (bench/peers/fastapi_app.py), one worker."""

    name = "fastapi"

    def __init__(self, redis_url: str, model_path: Path, workdir: Path) -> None:
        super().__init__(
            workdir,
            {"PYTHONPATH": str(PEERS_DIR), "BENCH_REDIS_URL": redis_url, "BENCH_MODEL_PATH": str(model_path)},
        )
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/predict"

    def command(self) -> Sequence[str]:
        return [
            str(venv_bin("fastapi")),
            "-m",
            "uvicorn",
            "fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--no-access-log",
        ]

    def ready(self) -> bool:
        return _http_ok(f"http://127.0.0.1:{self.port}/health")


def build_feast_repo(repo: Path, redis_host_port: str, users_parquet: Path, sdk_calls: int) -> dict[str, object]:
    """Apply the Feast repo and write the users to its Redis online store; returns the script's JSON."""
    proc = subprocess.run(
        [
            str(venv_bin("feast")),
            str(PEERS_DIR / "feast_repo.py"),
            "--repo",
            str(repo),
            "--redis",
            redis_host_port,
            "--users",
            str(users_parquet),
            "--sdk-calls",
            str(sdk_calls),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"FEAST_USAGE": "False", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"feast repo setup failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


class FeastServer(ManagedProcess):
    """`feast serve` (HTTP feature server) on a repo made by build_feast_repo, one worker."""

    name = "feast"
    ready_timeout_s = 60.0

    def __init__(self, repo: Path, workdir: Path) -> None:
        super().__init__(workdir, {"FEAST_USAGE": "False"})
        self.repo = repo
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/get-online-features"

    def command(self) -> Sequence[str]:
        return [
            str(venv_bin("feast", "feast")),
            "-c",
            str(self.repo),
            "serve",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-w",
            "1",
            "--no-access-log",
            "--max-requests",
            "100000000",  # default 1000 would recycle the worker mid-measurement
        ]

    def ready(self) -> bool:
        return _http_ok(f"http://127.0.0.1:{self.port}/health")


class RayServeProcess(ManagedProcess):
    """bench/peers/ray_app.py: a local Ray (loopback, `cpus` CPUs) serving the features +
    model composition behind Ray's HTTP proxy. Every Ray process (GCS, raylet, proxy,
    replicas) runs in this process's session, so `stop()` and the CPU sampler see them all."""

    name = "ray"
    ready_timeout_s = 240.0

    def __init__(self, redis_url: str, model_path: Path, workdir: Path, cpus: int = 2, max_ongoing: int = 256) -> None:
        self.port = free_port()
        self.ready_file = workdir / "ready"
        super().__init__(
            workdir,
            {
                "PYTHONPATH": str(PEERS_DIR),
                "BENCH_REDIS_URL": redis_url,
                "BENCH_MODEL_PATH": str(model_path),
                "BENCH_RAY_PORT": str(self.port),
                "BENCH_RAY_CPUS": str(cpus),
                "BENCH_RAY_MAX_ONGOING": str(max_ongoing),
                "BENCH_RAY_READY": str(self.ready_file),
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_USAGE_STATS_ENABLED": "0",
                # On a loaded 2-core box the dashboard agent can take >30 s to start; the raylet
                # would give up waiting for its port (a fatal check) at Ray's default.
                "RAY_agent_register_timeout_ms": "180000",
                "RAY_raylet_start_wait_time_s": "180",
            },
        )
        self.ready_file.unlink(missing_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/predict"

    def command(self) -> Sequence[str]:
        return [str(venv_bin("ray")), str(PEERS_DIR / "ray_app.py")]

    def ready(self) -> bool:
        return self.ready_file.exists()

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
        """SIGTERM (Serve and Ray shut down), then SIGKILL whatever is left of the session."""
        pid = self.pid
        super().stop(timeout, sig)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def ray_part(cmdline: str) -> str:
    """Which column of the CPU table a process of the Ray session counts to."""
    if "ProxyActor" in cmdline:
        return "edge"
    if "ServeReplica" in cmdline and ":Features" in cmdline:
        return "features"
    if "ServeReplica" in cmdline and ":Model" in cmdline:
        return "orchestrator"
    return "other"
