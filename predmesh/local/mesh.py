"""The whole mesh on loopback: what `predmesh up` runs and what the end-to-end tests start.

`LocalMesh` starts real processes in dependency order (Redis, then features and
inference, then the gateway), each on a free loopback port, loads the demo features and
models, and stops everything in reverse order. It is used from one thread; `stop()` is
idempotent and also runs when `start()` fails half-way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from predmesh.demo import FEATURE_REGISTRY
from predmesh.local.procs import ManagedProcess, PythonService, RedisServer, free_port

log = logging.getLogger(__name__)


@dataclass
class MeshOptions:
    """Where the mesh keeps its state and what it loads."""

    state_dir: Path = field(default_factory=lambda: Path(".predmesh"))
    demo_users: int = 1000
    registry_path: Path = FEATURE_REGISTRY
    gateway_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)


class LocalMesh:
    def __init__(self, options: MeshOptions | None = None) -> None:
        self.options = options or MeshOptions()
        self.state_dir = self.options.state_dir.resolve()
        self.model_repository = self.state_dir / "models"
        self.redis: RedisServer | None = None
        self.features: PythonService | None = None
        self.inference: PythonService | None = None
        self.gateway: PythonService | None = None
        self._started: list[ManagedProcess] = []

    @property
    def gateway_address(self) -> str:
        if self.gateway is None:
            raise RuntimeError("mesh not started")
        return self.gateway.address

    def _env(self, **values: str) -> dict[str, str]:
        env = {"PYTHONUNBUFFERED": "1", **self.options.extra_env, **values}
        env.setdefault(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))
        )
        return env

    def _launch(self, proc: ManagedProcess) -> None:
        proc.start()
        self._started.append(proc)

    def prepare(self) -> None:
        """Train the demo models if they are missing (idempotent, a few seconds)."""
        from services.inference.demo.train import ensure_demo_models

        ensure_demo_models(self.model_repository)

    def start(self) -> LocalMesh:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()

        self.redis = RedisServer(workdir=self.state_dir / "logs" / "redis")
        self._launch(self.redis)
        from services.features.loader import load_demo

        load_demo(self.redis.url, n=self.options.demo_users)

        self.features = self._service(
            "features",
            PREDMESH_FEATURES_REDIS_URL=self.redis.url,
            PREDMESH_FEATURES_REGISTRY_PATH=str(self.options.registry_path),
        )
        self.inference = self._service(
            "inference", PREDMESH_INFERENCE_MODEL_REPOSITORY=str(self.model_repository)
        )
        self._launch(self.features)
        self._launch(self.inference)
        self.gateway = self._service(
            "gateway",
            port=self.options.gateway_port,
            PREDMESH_GATEWAY_FEATURES_TARGET=self.features.address,
            PREDMESH_GATEWAY_INFERENCE_TARGET=self.inference.address,
        )
        self._launch(self.gateway)

    def _service(self, name: str, port: int = 0, **env: str) -> PythonService:
        """A `python -m services.<name>.app` process on a free (or given) loopback port."""
        port = port or free_port()
        prefix = f"PREDMESH_{name.upper()}_"
        return PythonService(
            name,
            f"services.{name}.app",
            port,
            self._env(**{f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port)}, **env),
            workdir=self.state_dir / "logs" / name,
        )

    def stop(self) -> None:
        while self._started:
            proc = self._started.pop()
            try:
                proc.stop()
            except Exception:  # keep stopping the rest
                log.exception("stopping %s failed", proc.name)

    def describe(self) -> dict[str, str]:
        """Addresses of everything that runs, for printing."""
        out: dict[str, str] = {}
        if self.gateway:
            out["gateway (gRPC PredictionService)"] = self.gateway.address
        if self.features:
            out["features (gRPC FeatureService)"] = self.features.address
        if self.inference:
            out["inference (gRPC InferenceService)"] = self.inference.address
        if self.redis:
            out["redis"] = self.redis.url
        out["logs"] = str(self.state_dir / "logs")
        return out

    def __enter__(self) -> LocalMesh:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
