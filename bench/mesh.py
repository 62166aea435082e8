"""The predmesh side of a benchmark: LocalMesh plus whatever optional parts exist yet.

`BenchMesh` starts `predmesh.local.mesh.LocalMesh` (Redis, features, inference,
gateway) and then tries the optional parts, each on its own, recording why one is
missing instead of failing the run:

- logging: a Kafka-protocol broker (`predmesh.local.kafka.TansuBroker`), the logger
  service (`services.logger.app`) and a *second* gateway that logs every prediction
  (the first one keeps logging off, so both can be measured side by side);
- Envoy: the xDS control plane (`services.controlplane.app`) pointed at the logging
  gateway when there is one (else the plain one), and a real Envoy configured by it.

Also `replicas(n)`: n extra (features, inference, gateway) process sets on the same
Redis, for the scaling scenario. Used from one thread; `stop()` stops everything.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from predmesh.local.mesh import LocalMesh, MeshOptions
from predmesh.local.procs import ManagedProcess, PythonService, free_port, port_open

log = logging.getLogger(__name__)


class _PortService(ManagedProcess):
    """`python -m module` that is ready once its port accepts connections (no gRPC health)."""

    def __init__(self, name: str, module: str, port: int, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.module = module
        self.port = port
        super().__init__(workdir, env)

    def command(self) -> Sequence[str]:
        return [sys.executable, "-m", self.module]

    def ready(self) -> bool:
        return port_open("127.0.0.1", self.port)


@dataclass
class Replica:
    features: PythonService
    inference: PythonService
    gateway: PythonService


@dataclass
class BenchMesh:
    state_dir: Path
    want_logging: bool = True
    want_envoy: bool = True
    mesh: LocalMesh | None = None
    logging_gateway: PythonService | None = None
    envoy_address: str | None = None
    envoy_upstream: str = ""
    unavailable: dict[str, str] = field(default_factory=dict)
    _extra: list[ManagedProcess] = field(default_factory=list)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> BenchMesh:
        self.mesh = LocalMesh(MeshOptions(state_dir=self.state_dir)).start()
        if self.want_logging:
            self._try("logging", self._start_logging)
        else:
            self.unavailable["logging"] = "not requested"
        if self.want_envoy:
            self._try("envoy", self._start_envoy)
        else:
            self.unavailable["envoy"] = "not requested"
        return self

    def stop(self) -> None:
        while self._extra:
            proc = self._extra.pop()
            try:
                proc.stop()
            except Exception:
                log.exception("stopping %s failed", proc.name)
        if self.mesh is not None:
            self.mesh.stop()
            self.mesh = None

    def __enter__(self) -> BenchMesh:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------
    @property
    def local(self) -> LocalMesh:
        if self.mesh is None:
            raise RuntimeError("bench mesh not started")
        return self.mesh

    @property
    def redis_url(self) -> str:
        assert self.local.redis is not None
        return self.local.redis.url

    @property
    def model_repository(self) -> Path:
        return self.local.model_repository

    # -- optional parts ------------------------------------------------------------------
    def _try(self, part: str, start: object) -> None:
        try:
            start()  # type: ignore[operator]
        except Exception as err:  # an optional part that is not there (yet) is reported, not fatal
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            log.warning("%s not available: %s", part, reason)
            self.unavailable[part] = reason

    def _launch(self, proc: ManagedProcess) -> ManagedProcess:
        proc.start()
        self._extra.append(proc)
        return proc

    def _env(self, **values: str) -> dict[str, str]:
        pythonpath = os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))
        return {"PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath, **values}

    def _python_service(self, name: str, module: str, prefix: str, **env: str) -> PythonService:
        port = free_port()
        return PythonService(
            name,
            module,
            port,
            self._env(**{f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port)}, **env),
            workdir=self.state_dir / "logs" / name,
        )

    def _start_logging(self) -> None:
        from predmesh.local.kafka import TansuBroker, create_topics

        broker = self._launch(TansuBroker(workdir=self.state_dir / "logs" / "tansu"))
        bootstrap = broker.bootstrap_servers  # type: ignore[attr-defined]
        create_topics(bootstrap, ["predictions", "shadow-predictions"])
        logger = self._launch(
            self._python_service(
                "logger",
                "services.logger.app",
                "PREDMESH_LOGGER_",
                PREDMESH_LOGGER_BOOTSTRAP_SERVERS=bootstrap,
                PREDMESH_LOGGER_JOURNAL_DIR=str(self.state_dir / "logger-journal"),
            )
        )
        assert self.local.features is not None and self.local.inference is not None
        self.logging_gateway = self._launch(  # type: ignore[assignment]
            self._python_service(
                "gateway-logging",
                "services.gateway.app",
                "PREDMESH_GATEWAY_",
                PREDMESH_GATEWAY_FEATURES_TARGET=self.local.features.address,
                PREDMESH_GATEWAY_INFERENCE_TARGET=self.local.inference.address,
                PREDMESH_GATEWAY_LOGGER_TARGET=logger.address,  # type: ignore[attr-defined]
            )
        )

    def _start_envoy(self) -> None:
        from predmesh.local.envoy import EnvoyProcess

        upstream = self.logging_gateway.address if self.logging_gateway else self.local.gateway_address
        xds_port, listener_port = free_port(), free_port()
        self._launch(
            _PortService(
                "controlplane",
                "services.controlplane.app",
                xds_port,
                self._env(
                    PREDMESH_CONTROLPLANE_HOST="127.0.0.1",
                    PREDMESH_CONTROLPLANE_PORT=str(xds_port),
                    PREDMESH_CONTROLPLANE_GATEWAY_ENDPOINTS=upstream,
                    PREDMESH_CONTROLPLANE_LISTENER_PORT=str(listener_port),
                    PREDMESH_CONTROLPLANE_LISTENER_HOST="127.0.0.1",
                ),
                self.state_dir / "logs" / "controlplane",
            )
        )
        self._launch(
            EnvoyProcess(f"127.0.0.1:{xds_port}", workdir=self.state_dir / "logs" / "envoy", log_level="warning")
        )
        from predmesh.local.procs import wait_until

        wait_until(lambda: port_open("127.0.0.1", listener_port), 20.0, "envoy listener")
        self.envoy_address = f"127.0.0.1:{listener_port}"
        self.envoy_upstream = "gateway with logging" if self.logging_gateway else "gateway (no logging)"

    # -- scaling -------------------------------------------------------------------------
    def add_replica(self) -> Replica:
        """One more features + inference + gateway set on the same Redis and model repository."""
        features = self._launch(
            self._python_service(
                "features-r",
                "services.features.app",
                "PREDMESH_FEATURES_",
                PREDMESH_FEATURES_REDIS_URL=self.redis_url,
                PREDMESH_FEATURES_REGISTRY_PATH=str(self.local.options.registry_path),
            )
        )
        inference = self._launch(
            self._python_service(
                "inference-r",
                "services.inference.app",
                "PREDMESH_INFERENCE_",
                PREDMESH_INFERENCE_MODEL_REPOSITORY=str(self.model_repository),
            )
        )
        gateway = self._launch(
            self._python_service(
                "gateway-r",
                "services.gateway.app",
                "PREDMESH_GATEWAY_",
                PREDMESH_GATEWAY_FEATURES_TARGET=features.address,  # type: ignore[attr-defined]
                PREDMESH_GATEWAY_INFERENCE_TARGET=inference.address,  # type: ignore[attr-defined]
            )
        )
        return Replica(features, inference, gateway)  # type: ignore[arg-type]
