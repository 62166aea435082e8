"""The predmesh side of a benchmark: `LocalMesh` plus the extra processes a scenario needs.

`BenchMesh.start()` starts `predmesh.local.mesh.LocalMesh` with the Kafka logger and the
Envoy edge (xDS control plane) when asked; if that fails (a part missing or broken) the
reason is recorded in `unavailable` and the core mesh (Redis, features, inference,
gateway) is started without them, so a run still measures what exists.

Extra processes, all stopped by `stop()`:
- `plain_gateway()`: a second gateway without prediction logging (same features,
  inference and routing file), so logging's cost is measured side by side;
- `add_inference(**env)`: another orchestrator on the same model repository with other
  settings (e.g. executing on Triton or on ORT worker processes);
- `add_replica()`: one more features + inference + gateway set, for scaling.
Used from one thread.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from predmesh.local.mesh import LocalMesh, MeshOptions
from predmesh.local.procs import ManagedProcess, PythonService, free_port

log = logging.getLogger(__name__)


def bench_options(state_dir: Path, logging_on: bool, edge: bool) -> MeshOptions:
    """The measured configuration (docs/BENCHMARKS.md): the orchestrator runs ONNX Runtime in
    process (the Triton and ORT worker rows start their own servers), and no drift monitor: it
    is an off-path Kafka consumer that would take CPU from the request path on this small box.
    Plaintext edge, no mTLS and no API key: the numbers stay comparable with earlier runs; the
    cost of TLS is measured on its own (bench/tls_cost.py)."""
    return MeshOptions(
        state_dir=state_dir,
        with_logger=logging_on,
        with_edge=edge,
        with_triton=False,
        ort_workers=0,
        with_monitor=False,
        auth=False,
        edge_tls=False,
        mtls=False,
    )


@dataclass
class Replica:
    features: PythonService
    inference: PythonService
    gateway: PythonService


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


@dataclass
class BenchMesh:
    state_dir: Path
    want_logging: bool = True
    want_edge: bool = True
    mesh: LocalMesh | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    _extra: list[ManagedProcess] = field(default_factory=list)
    _plain_gateway: PythonService | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> BenchMesh:
        options = bench_options(self.state_dir, self.want_logging, self.want_edge)
        # Measure the shipped routing table: LocalMesh keeps an existing copy (live edits),
        # which in a reused bench state dir would be a stale one.
        self.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(options.routing_template, self.state_dir / "routing.yaml")
        try:
            self.mesh = LocalMesh(options).start()
        except Exception as err:
            if not (self.want_logging or self.want_edge):
                raise
            reason = _reason(err)
            log.warning("full mesh failed (%s); starting it without logger and edge", reason)
            for part, wanted in (("logging", self.want_logging), ("envoy edge", self.want_edge)):
                if wanted:
                    self.unavailable[part] = f"LocalMesh with logger+edge failed to start: {reason}"
            self.mesh = LocalMesh(bench_options(self.state_dir, False, False)).start()
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

    # -- what runs -----------------------------------------------------------------------
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

    @property
    def logging_on(self) -> bool:
        return self.local.logger is not None

    @property
    def edge_address(self) -> str | None:
        """Envoy's listener when the edge runs, else None."""
        return self.local.edge_address if self.local.envoy is not None else None

    # -- extra processes -----------------------------------------------------------------
    def launch(self, proc: ManagedProcess) -> ManagedProcess:
        proc.start()
        self._extra.append(proc)
        return proc

    def _service(self, name: str, module: str, prefix: str, **env: str) -> PythonService:
        port = free_port()
        pythonpath = os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))
        return PythonService(
            name,
            module,
            port,
            {
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": pythonpath,
                f"{prefix}HOST": "127.0.0.1",
                f"{prefix}PORT": str(port),
                **env,
            },
            workdir=self.state_dir / "logs" / name,
        )

    def _gateway(self, name: str, features: str, inference: str) -> PythonService:
        return self._service(
            name,
            "services.gateway.app",
            "PREDMESH_GATEWAY_",
            PREDMESH_GATEWAY_FEATURES_TARGET=features,
            PREDMESH_GATEWAY_INFERENCE_TARGET=inference,
            PREDMESH_GATEWAY_LOGGER_TARGET="",
            PREDMESH_GATEWAY_ROUTING_PATH=str(self.local.routing_path),
            PREDMESH_GATEWAY_ALLOW_ANONYMOUS="true",  # as the bench mesh's own gateway (bench_options)
        )

    def gateway_for(self, name: str, inference: str) -> str:
        """A gateway (no logging) in front of another orchestrator; returns its address."""
        assert self.local.features is not None
        gateway = self._gateway(name, self.local.features.address, inference)
        self.launch(gateway)
        return gateway.address

    def plain_gateway(self) -> str:
        """Address of a gateway that does not log (the mesh's own when logging is off)."""
        if not self.logging_on:
            return self.local.gateway_address
        if self._plain_gateway is None:
            assert self.local.features is not None and self.local.inference is not None
            gateway = self._gateway("gateway-nolog", self.local.features.address, self.local.inference.address)
            self.launch(gateway)
            self._plain_gateway = gateway
        return self._plain_gateway.address

    @property
    def plain_gateway_process(self) -> PythonService | None:
        """The process behind `plain_gateway()` (the mesh's own gateway when logging is off)."""
        self.plain_gateway()
        return self._plain_gateway if self._plain_gateway is not None else self.local.gateway

    def add_inference(self, name: str, model_repository: Path | None = None, **env: str) -> PythonService:
        proc = self._service(
            name,
            "services.inference.app",
            "PREDMESH_INFERENCE_",
            PREDMESH_INFERENCE_MODEL_REPOSITORY=str(model_repository or self.model_repository),
            **env,
        )
        self.launch(proc)
        return proc

    def add_replica(self) -> Replica:
        """One more features + inference + gateway set on the same Redis and model repository."""
        features = self._service(
            "features-r",
            "services.features.app",
            "PREDMESH_FEATURES_",
            PREDMESH_FEATURES_REDIS_URL=self.redis_url,
            PREDMESH_FEATURES_REGISTRY_PATH=str(self.local.options.registry_path),
        )
        self.launch(features)
        inference = self.add_inference("inference-r")
        gateway = self._gateway("gateway-r", features.address, inference.address)
        self.launch(gateway)
        return Replica(features, inference, gateway)
