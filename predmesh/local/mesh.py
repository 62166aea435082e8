"""The whole mesh on loopback: what `predmesh up` runs and what the end-to-end tests start.

`LocalMesh` starts real processes in dependency order, each on a free loopback port:
Redis (demo features loaded) and the Kafka-protocol broker (tansu) first, then the logger,
features service, tritonserver and ONNX Runtime workers, then the inference orchestrator
(dispatching GPU-placed models to Triton and CPU models to the workers), then the gateway
(watching a routing file; `gateway_replicas` of them), then the xDS control plane and Envoy
in front of the gateway replicas. With `background_tier`, batch-job chunks and async requests
are scored by a gateway, features and orchestrator of their own at nice 19, not behind Envoy.
Once everything is up, a `Supervisor` restarts any process
that dies (same ports, back-off, logged with its exit status) and keeps `status.json` in the
state dir current (`predmesh status`). Redis keeps an append-only file in `<state>/redis`,
so a restarted Redis keeps its features; a restarted broker (memory storage) gets its
topics back and the logger replays its journal into it.
It stops the supervisor first, then everything in reverse order.
Used from one thread; `stop()` is idempotent and also runs when `start()` fails half-way.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predmesh.demo import DEMO_ROUTING, FEATURE_REGISTRY
from predmesh.local.cpugroup import IdleCpuGroup
from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS
from predmesh.local.procs import ManagedProcess, PythonService, RedisServer, free_port, port_open, wait_until
from predmesh.local.rediscluster import RedisCluster
from predmesh.local.supervisor import STATUS_FILE, Supervisor

log = logging.getLogger(__name__)

BACKGROUND_NICENESS = 19  # the background tier's processes (MeshOptions.background_tier): lowest CPU priority
TOPICS = ("predictions", "shadow-predictions", "outcomes", "retrain-webhooks")
ASYNC_TOPICS = ("async-requests", "async-results", "async-dead-letters")  # with_async_queue
# Certificates of the local mesh (pki/<identity>.crt): each service's identity, plus "operator"
# for people and tools (health probes, ReloadModels, tests).
MTLS_IDENTITIES = (
    "gateway",
    "features",
    "inference",
    "logger",
    "ortworker",
    "controlplane",
    "envoy",
    "triton",
    "sink",
    "operator",
)
# Envoy calls the gateway with the "envoy" certificate (served to it over SDS) and fetches its
# config over ADS with the same certificate (from its bootstrap); the control plane serves mTLS on
# both its ports (ADS: envoy only; admin API: operator only).
MTLS_SERVERS = ("gateway", "features", "inference", "logger", "ortworker", "controlplane", "sink")


@dataclass
class MeshOptions:
    """Where the mesh keeps its state and what it runs."""

    state_dir: Path = field(default_factory=lambda: Path(".predmesh"))
    demo_users: int = 1000
    registry_path: Path = FEATURE_REGISTRY
    routing_template: Path = DEMO_ROUTING
    gateway_port: int = 0
    edge_port: int = 0
    with_logger: bool = True
    with_monitor: bool = True  # drift monitor on the prediction log (needs the logger)
    with_ingest: bool = False  # streaming feature ingestion from `feature-events` (needs the broker: with_logger)
    # analytics sink (embedded ClickHouse under <state>/analytics) + rollout controller (needs the logger)
    with_sink: bool = False
    with_edge: bool = True
    with_triton: bool = True  # GPU-placed models (fraud_nn) go to tritonserver (CPU python backend here)
    ort_workers: int = 1  # CPU models go to this many ONNX Runtime worker processes (0 = in-process)
    pool_max_models: int = 0  # > 0: model pools of this many versions per backend (lazy loading, LRU eviction)
    auth: bool = True  # the gateway requires an API key (generated into the state dir); False = anonymous
    edge_tls: bool = True  # the edge listener speaks TLS with a certificate of a local CA (state dir)
    mtls: bool = True  # features, inference, ORT workers and logger serve mutual TLS; their callers use certs
    gateway_replicas: int = 1  # gateway processes behind Envoy (the control plane's `gateway` endpoints)
    features_replicas: int = 1  # features processes; the gateway round-robins over them (ipv4:a,b target)
    inference_replicas: int = 1  # inference orchestrators; the gateway round-robins over them
    redis_cluster: bool = False  # features on a local Redis Cluster (3 masters + 3 replicas) instead of one Redis
    supervise: bool = True  # restart dead processes and write <state_dir>/status.json
    extra_env: dict[str, str] = field(default_factory=dict)
    with_async_queue: bool = False  # durable PredictAsync + GetPrediction (Kafka async topics, Redis; needs the broker)
    # the prediction cache's shared level (and its ingest invalidations) on the mesh's Redis; used only
    # by models whose routing has a `cache` policy (without it: the in-process level alone)
    with_cache: bool = False
    with_batch_jobs: bool = False  # server-side batch jobs (BatchJobService): Redis state, files under <state>/batch
    # Background work (batch-job chunks; async requests with the async queue) on processes of its own:
    # a gateway that takes no edge traffic, with its own features and inference processes, all at
    # nice BACKGROUND_NICENESS; the edge's gateways run no background worker. The kernel then gives
    # the real-time path's processes the CPU first, even on a box with fewer cores than processes.
    background_tier: bool = False


class LocalMesh:
    def __init__(self, options: MeshOptions | None = None) -> None:
        self.options = options or MeshOptions()
        self.state_dir = self.options.state_dir.resolve()
        self.model_repository = self.state_dir / "models"
        self.routing_path = self.state_dir / "routing.yaml"
        self.redis: RedisServer | None = None
        self.redis_cluster: RedisCluster | None = None
        self.broker: ManagedProcess | None = None
        self.logger: PythonService | None = None
        self.monitor: PythonService | None = None
        self.monitor_metrics_port = 0
        self.ingest: PythonService | None = None
        self.sink: PythonService | None = None
        # with the sink, every service traces to its local OTLP receiver (`predmesh trace`)
        self.sink_otlp_port = free_port() if self.options.with_sink and self.options.with_logger else 0
        self.features: PythonService | None = None  # the first features replica
        self.features_replicas: list[PythonService] = []
        self.inference: PythonService | None = None  # the first inference replica
        self.inference_replicas: list[PythonService] = []
        self.gateway: PythonService | None = None
        self.gateways: list[PythonService] = []
        self.background: list[PythonService] = []  # background_tier: features, inference, gateway
        self.background_group: IdleCpuGroup | None = None  # their idle cpu cgroup, where the host allows one
        self.controlplane: PythonService | None = None
        self.triton: ManagedProcess | None = None
        self.ort_workers: list[PythonService] = []
        self.envoy: ManagedProcess | None = None
        self.edge_port = 0
        self.controlplane_admin_port = 0
        self.pki_dir = self.state_dir / "pki"
        self.ca_path: Path | None = None
        self.mesh_ca: Path | None = None  # CA of the internal mTLS certificates (same local CA)
        self.api_key = ""
        self.api_keys_path = self.state_dir / "api-keys.json"
        self._started: list[ManagedProcess] = []
        self.supervisor: Supervisor | None = None

    # -- addresses -------------------------------------------------------------
    @property
    def gateway_address(self) -> str:
        if self.gateway is None:
            raise RuntimeError("mesh not started")
        return self.gateway.address

    @property
    def edge_address(self) -> str:
        """Envoy's listener (what clients call); the gateway itself without the edge."""
        return f"127.0.0.1:{self.edge_port}" if self.envoy is not None else self.gateway_address

    @property
    def edge_scheme(self) -> str:
        """`https` when the edge terminates TLS (HTTP/JSON URLs), else `http`."""
        return "https" if self.ca_path is not None and self.envoy is not None else "http"

    def call_metadata(self) -> list[tuple[str, str]]:
        """gRPC metadata every call to the edge or the gateway needs (the API key, when auth is on)."""
        return [("x-api-key", self.api_key)] if self.api_key else []

    def http_headers(self) -> dict[str, str]:
        """Headers of an HTTP/JSON call to the edge (content type + API key)."""
        return {"content-type": "application/json", **dict(self.call_metadata())}

    def ssl_context(self) -> ssl.SSLContext | None:
        """Client TLS context trusting the mesh CA (for HTTP/JSON calls to the edge); None without edge TLS."""
        return ssl.create_default_context(cafile=str(self.ca_path)) if self.edge_scheme == "https" else None

    def edge_channel(
        self, aio: bool = False, options: list[tuple[str, Any]] | None = None, authenticated: bool = True
    ) -> Any:
        """A channel to the edge, sync or grpc.aio; the caller closes it. TLS with the mesh CA when the
        edge terminates TLS; every unary call carries `call_metadata()` unless `authenticated=False`."""
        import grpc

        if self.edge_scheme != "https":
            return self._channel(self.edge_address, None, aio, options, authenticated)
        assert self.ca_path is not None
        creds = grpc.ssl_channel_credentials(root_certificates=self.ca_path.read_bytes())
        opts = [*(options or []), ("grpc.ssl_target_name_override", "localhost")]
        return self._channel(self.edge_address, creds, aio, opts, authenticated)

    def gateway_channel(
        self, aio: bool = False, options: list[tuple[str, Any]] | None = None, authenticated: bool = True
    ) -> Any:
        """A channel straight to the gateway (inside the mesh: mutual TLS with the operator's certificate
        when the mesh runs mTLS), like `edge_channel`."""
        import grpc

        files = self.identity_files("operator")
        creds = None
        if files is not None:
            creds = grpc.ssl_channel_credentials(files.ca.read_bytes(), files.key.read_bytes(), files.cert.read_bytes())
        return self._channel(self.gateway_address, creds, aio, options, authenticated)

    def internal_channel(self, address: str, identity: str = "operator", aio: bool = False) -> Any:
        """A channel to an internal service (features, inference, logger, ORT worker): mutual TLS with
        `identity`'s certificate when the mesh runs mTLS, else plaintext. The caller closes it."""
        import grpc

        files = self.identity_files(identity)
        if files is None:
            return grpc.aio.insecure_channel(address) if aio else grpc.insecure_channel(address)
        creds = grpc.ssl_channel_credentials(files.ca.read_bytes(), files.key.read_bytes(), files.cert.read_bytes())
        return grpc.aio.secure_channel(address, creds) if aio else grpc.secure_channel(address, creds)

    def _channel(
        self, address: str, creds: Any, aio: bool, options: list[tuple[str, Any]] | None, authenticated: bool
    ) -> Any:
        import grpc

        from predmesh.local.callauth import AioMetadataInterceptor, MetadataInterceptor

        metadata = self.call_metadata() if authenticated else []
        if aio:
            interceptors = [AioMetadataInterceptor(metadata)] if metadata else None
            if creds is None:
                return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
            return grpc.aio.secure_channel(address, creds, options=options, interceptors=interceptors)
        channel = (
            grpc.insecure_channel(address, options=options)
            if creds is None
            else grpc.secure_channel(address, creds, options=options)
        )
        return grpc.intercept_channel(channel, MetadataInterceptor(metadata)) if metadata else channel

    @property
    def bootstrap_servers(self) -> str:
        if self.broker is None:
            raise RuntimeError("no broker in this mesh")
        return str(self.broker.bootstrap_servers)  # type: ignore[attr-defined]

    # -- lifecycle -------------------------------------------------------------
    def prepare(self) -> None:
        """Train the demo models if they are missing (idempotent, a few seconds)."""
        from predmesh.demo.train import ensure_demo_models

        ensure_demo_models(self.model_repository)

    def start(self) -> LocalMesh:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        opts = self.options
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        self._make_credentials()
        if not self.routing_path.exists():
            shutil.copyfile(opts.routing_template, self.routing_path)

        stores: list[ManagedProcess] = self._redis_processes()
        if opts.with_logger:
            from predmesh.local.kafka import TansuBroker

            self.broker = TansuBroker(workdir=self._logs("broker"))
            stores.append(self.broker)
        self._launch(*stores)
        if self.redis_cluster is not None:
            self.redis_cluster.create()
        from predmesh.demo.load import load_demo

        load_demo(self.redis_url, n=opts.demo_users)

        services: list[ManagedProcess] = []
        if opts.with_logger:
            from predmesh.local.kafka import create_topics

            create_topics(self.bootstrap_servers, list(TOPICS))
            self.logger = self._service(
                "logger",
                {
                    "PREDMESH_LOGGER_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                    "PREDMESH_LOGGER_JOURNAL_DIR": str(self.state_dir / "journal"),
                },
            )
            services.append(self.logger)
        if opts.with_logger and opts.with_monitor:
            # Drift monitor on the prediction log: PSI vs each version's reference.json, on /metrics.
            metrics_env = "PREDMESH_MONITOR_METRICS_PORT"
            self.monitor_metrics_port = int(opts.extra_env.get(metrics_env) or free_port())
            self.monitor = self._service(
                "monitor",
                {
                    "PREDMESH_MONITOR_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                    "PREDMESH_MONITOR_MODEL_REPOSITORY": str(self.model_repository),
                    "PREDMESH_MONITOR_KAFKA_EXTRA": json.dumps(DEV_CONSUMER_TIMEOUTS),
                    metrics_env: str(self.monitor_metrics_port),
                },
            )
            services.append(self.monitor)
        if opts.with_logger and opts.with_sink:
            services.append(self._start_sink())
        backends: dict[str, str] = {}
        if opts.with_triton:
            from predmesh.local.triton import TritonServer

            # Explicit model control: the orchestrator tells Triton when to load a new version and when
            # a removed one has drained (hot swap), instead of Triton polling the repository on its own.
            # With a model pool Triton starts empty: the orchestrator's pool loads versions on demand.
            # With mTLS, model control is also restricted to the orchestrator (admin-key header).
            admin_key = secrets.token_urlsafe(24) if self.mesh_ca is not None else ""
            self.triton = TritonServer(
                self.model_repository,
                workdir=self._logs("triton"),
                extra_args=["--model-control-mode=explicit", *([] if opts.pool_max_models else ["--load-model=*"])],
                tls=self.identity_files("triton"),
                probe_tls=self.identity_files("operator"),
                admin_key=admin_key,
            )
            services.append(self.triton)
            backends["PREDMESH_INFERENCE_TRITON_TARGET"] = self.triton.grpc_address  # type: ignore[attr-defined]
            backends["PREDMESH_INFERENCE_TRITON_MODEL_CONTROL"] = "true"
            backends["PREDMESH_INFERENCE_TRITON_CONFIG_NAME"] = "cpu_local"
            if self.mesh_ca is not None:
                backends["PREDMESH_INFERENCE_TRITON_TLS"] = "true"
                backends["PREDMESH_INFERENCE_TRITON_ADMIN_KEY"] = admin_key
        if opts.ort_workers:
            from predmesh.local.triton import OrtWorker

            self.ort_workers = [
                OrtWorker(
                    self.model_repository,
                    env={
                        **self._mtls_env("PREDMESH_ORTWORKER_", "ortworker"),
                        **opts.extra_env,
                        **({"PREDMESH_ORTWORKER_MODEL_CONTROL": "explicit"} if opts.pool_max_models else {}),
                    },
                    workdir=self._logs(f"ort-worker-{i}"),
                    name=f"ort-worker-{i}",
                )
                for i in range(opts.ort_workers)
            ]
            for worker in self.ort_workers:
                worker.probe_tls = self.identity_files("operator")
            services += self.ort_workers
            backends["PREDMESH_INFERENCE_ORT_WORKERS"] = ",".join(w.address for w in self.ort_workers)
        features_env = {
            "PREDMESH_FEATURES_REDIS_URL": self.redis_url,
            "PREDMESH_FEATURES_REGISTRY_PATH": str(opts.registry_path),
        }
        self.features_replicas = self._replicas("features", features_env, opts.features_replicas)
        self.features = self.features_replicas[0]
        services += self.features_replicas
        services += self._start_ingest() if opts.with_ingest and opts.with_logger else []
        self._launch(*services)
        # The orchestrator loads its models on its backends at start, so they come first.
        if opts.pool_max_models:
            backends["PREDMESH_INFERENCE_POOL_MAX_MODELS"] = str(opts.pool_max_models)
        inference_env = {
            "PREDMESH_INFERENCE_MODEL_REPOSITORY": str(self.model_repository),
            # The routing table's arms are the model pools' eager versions (when pools are on).
            "PREDMESH_INFERENCE_ROUTING_PATH": str(self.routing_path),
            **backends,
        }
        self.inference_replicas = self._replicas("inference", inference_env, opts.inference_replicas)
        self.inference = self.inference_replicas[0]
        self._launch(*self.inference_replicas)

        gateway_env = {
            "PREDMESH_GATEWAY_FEATURES_TARGET": _balanced_target(self.features_replicas),
            "PREDMESH_GATEWAY_INFERENCE_TARGET": _balanced_target(self.inference_replicas),
            "PREDMESH_GATEWAY_LOGGER_TARGET": self.logger.address if self.logger else "",
            "PREDMESH_GATEWAY_ROUTING_PATH": str(self.routing_path),
            **self._gateway_auth_env(),
            **self._start_async_queue(),
            **self._start_cache(),
            **self._start_batch_jobs(),
        }
        if opts.background_tier:
            self._start_background_tier(gateway_env, features_env, inference_env)
            gateway_env |= {"PREDMESH_GATEWAY_BATCH_WORKER": "false", "PREDMESH_GATEWAY_ASYNC_WORKER": "false"}
        if opts.gateway_replicas > 1 and "PREDMESH_GATEWAY_DRAIN_DELAY_S" not in opts.extra_env:
            # Behind Envoy: on SIGTERM keep serving until its health checks (1 s x 2) took the replica out.
            gateway_env["PREDMESH_GATEWAY_DRAIN_DELAY_S"] = "3"
        metrics_port = "PREDMESH_GATEWAY_METRICS_PORT"
        self.gateways = [
            self._service(
                "gateway",
                # Replicas after the first get their own free /metrics port when one is configured.
                gateway_env
                if i == 0 or metrics_port not in opts.extra_env
                else {**gateway_env, metrics_port: str(free_port())},
                port=opts.gateway_port if i == 0 else 0,
                instance=f"gateway-{i}" if opts.gateway_replicas > 1 else "gateway",
            )
            for i in range(max(1, opts.gateway_replicas))
        ]
        self.gateway = self.gateways[0]
        self._launch(*self.gateways)
        if opts.with_edge:
            self._start_edge()
        if opts.supervise:
            self._supervise()

    def _start_background_tier(
        self, gateway_env: dict[str, str], features_env: dict[str, str], inference_env: dict[str, str]
    ) -> None:
        """The background tier (MeshOptions.background_tier): features and inference processes of its
        own and a gateway, not behind the edge, that runs the batch-job and async workers against them;
        every one at BACKGROUND_NICENESS and, where the host allows it, in an idle cpu cgroup of the mesh
        (predmesh/local/cpugroup.py), also after a restart. Triton and ORT workers are shared."""
        features = self._service("features", features_env, instance="features-background")
        inference = self._service("inference", inference_env, instance="inference-background")
        metrics = "PREDMESH_GATEWAY_METRICS_PORT"
        gateway = self._service(
            "gateway",
            {
                **gateway_env,
                "PREDMESH_GATEWAY_FEATURES_TARGET": features.address,
                "PREDMESH_GATEWAY_INFERENCE_TARGET": inference.address,
                "PREDMESH_GATEWAY_BATCH_WORKER": "true",
                "PREDMESH_GATEWAY_ASYNC_WORKER": "true",
                **({metrics: str(free_port())} if metrics in self.options.extra_env else {}),
            },
            instance="gateway-background",
        )
        self.background = [features, inference, gateway]
        self.background_group = IdleCpuGroup.create(f"predmesh-background-{os.getpid()}-{id(self):x}")
        for proc in self.background:
            proc.niceness = BACKGROUND_NICENESS
            proc.cpu_group = self.background_group
        self._launch(features, inference)
        self._launch(gateway)

    def _start_ingest(self) -> list[ManagedProcess]:
        """The ingestion service on `feature-events` (its topics created here), writing the mesh's Redis."""
        from predmesh.clients.featureevents import FEATURE_EVENTS_DLQ_TOPIC, FEATURE_EVENTS_TOPIC
        from predmesh.local.kafka import create_topics

        create_topics(self.bootstrap_servers, [FEATURE_EVENTS_TOPIC, FEATURE_EVENTS_DLQ_TOPIC])
        self.ingest = self._service(
            "ingest",
            {
                "PREDMESH_INGEST_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                "PREDMESH_INGEST_REDIS_URL": self.redis_url,  # one Redis or the cluster (cluster_writer.py)
                "PREDMESH_INGEST_REGISTRY_PATH": str(self.options.registry_path),
                "PREDMESH_INGEST_KAFKA_EXTRA": json.dumps(DEV_CONSUMER_TIMEOUTS),
            },
        )
        return [self.ingest]

    def _start_sink(self) -> PythonService:
        """The analytics sink (prediction log, shadow predictions, outcomes -> embedded ClickHouse under
        <state>/analytics) running the rollout controller on the routing file; launched with the others."""
        self.sink = self._service(
            "sink",
            {
                "PREDMESH_SINK_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                "PREDMESH_SINK_CHDB_PATH": str(self.state_dir / "analytics"),
                "PREDMESH_SINK_ROUTING_PATH": str(self.routing_path),
                "PREDMESH_SINK_KAFKA_EXTRA": json.dumps(DEV_CONSUMER_TIMEOUTS),
                "PREDMESH_SINK_OTLP_PORT": str(self.sink_otlp_port),
            },
        )
        return self.sink

    @property
    def redis_url(self) -> str:
        """The features' Redis: `redis://` (one server) or `redis+cluster://` (a seed node of the cluster)."""
        if self.redis_cluster is not None:
            return self.redis_cluster.url
        if self.redis is None:
            raise RuntimeError("mesh not started")
        return self.redis.url

    def _redis_processes(self) -> list[ManagedProcess]:
        """One Redis (append-only file in <state>/redis), or the nodes of a Redis Cluster.

        The cluster is created afresh on each start (its nodes get new free ports, so an old
        `nodes.conf` would point at dead addresses); the demo features are loaded again anyway.
        The supervisor restarts a dead node in place: it rejoins from its nodes.conf (a master
        whose replica took over comes back as that replica's replica)."""
        if not self.options.redis_cluster:
            self.redis = RedisServer(workdir=self.state_dir / "redis", persist=True)
            return [self.redis]
        workdir = self.state_dir / "redis-cluster"
        shutil.rmtree(workdir, ignore_errors=True)
        self.redis_cluster = RedisCluster(workdir, persist=True)
        return list(self.redis_cluster.nodes)

    def _supervise(self) -> None:
        self.supervisor = Supervisor(self.state_dir / STATUS_FILE)
        for proc in self._started:
            hook = self._recreate_topics if proc is self.broker else None
            self.supervisor.watch(proc, after_restart=hook)
        self.supervisor.start()

    def _start_async_queue(self) -> dict[str, str]:
        """Topics of the durable async path and the gateway env that turns it on ({} when off)."""
        store = self.redis or self.redis_cluster
        if not (self.options.with_async_queue and self.broker is not None and store is not None):
            return {}
        from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS, create_topics

        create_topics(self.bootstrap_servers, list(ASYNC_TOPICS))
        return {
            "PREDMESH_GATEWAY_ASYNC_KAFKA_BOOTSTRAP": self.bootstrap_servers,
            "PREDMESH_GATEWAY_ASYNC_REDIS_URL": store.url,
            "PREDMESH_GATEWAY_ASYNC_KAFKA_EXTRA": json.dumps(DEV_CONSUMER_TIMEOUTS),
        }

    def _start_cache(self) -> dict[str, str]:
        """The gateway env of the prediction cache's shared Redis level ({} when off): the features'
        Redis, one server or the cluster, where the ingestion service bumps generations and publishes."""
        if not self.options.with_cache:
            return {}
        return {"PREDMESH_GATEWAY_CACHE_REDIS_URL": self.redis_url}

    @property
    def batch_dir(self) -> Path:
        """The one folder server-side batch jobs may read and write (with_batch_jobs)."""
        return self.state_dir / "batch"

    @property
    def batch_jobs_on(self) -> bool:
        """Server-side batch jobs run (with_batch_jobs, once the mesh's Redis or Redis Cluster is up)."""
        return self.options.with_batch_jobs and (self.redis is not None or self.redis_cluster is not None)

    def _start_batch_jobs(self) -> dict[str, str]:
        """Gateway env that turns server-side batch jobs on ({} when off): state in the mesh's Redis (or
        Redis Cluster), files only under <state>/batch (created here)."""
        store = self.redis or self.redis_cluster
        if not self.options.with_batch_jobs or store is None:
            return {}
        self.batch_dir.mkdir(parents=True, exist_ok=True)
        return {
            "PREDMESH_GATEWAY_BATCH_REDIS_URL": store.url,
            "PREDMESH_GATEWAY_BATCH_ALLOWED_ROOTS": json.dumps([str(self.batch_dir)]),
        }

    def _recreate_topics(self) -> None:
        """A restarted broker (memory storage) has no topics: create them before the logger replays."""
        from predmesh.local.kafka import create_topics

        create_topics(self.bootstrap_servers, [*TOPICS, *(ASYNC_TOPICS if self.options.with_async_queue else ())])
        if self.ingest is not None:
            from predmesh.clients.featureevents import FEATURE_EVENTS_DLQ_TOPIC, FEATURE_EVENTS_TOPIC

            create_topics(self.bootstrap_servers, [FEATURE_EVENTS_TOPIC, FEATURE_EVENTS_DLQ_TOPIC])

    def process(self, name: str) -> ManagedProcess:
        """The running process called `name` (e.g. "redis", "tansu", "gateway-1", "ort-worker-0")."""
        for proc in self._started:
            if proc.name == name:
                return proc
        raise KeyError(f"no process {name!r} in this mesh: {[p.name for p in self._started]}")

    def _start_edge(self) -> None:
        from predmesh.local.envoy import EnvoyProcess

        assert self.gateway is not None
        self.edge_port = self.options.edge_port or free_port()
        self.controlplane_admin_port = free_port()
        self.controlplane = self._service(
            "controlplane",
            {
                "PREDMESH_CONTROLPLANE_GATEWAY_ENDPOINTS": ",".join(g.address for g in self.gateways),
                "PREDMESH_CONTROLPLANE_ADMIN_PORT": str(self.controlplane_admin_port),
                "PREDMESH_CONTROLPLANE_LISTENER_PORT": str(self.edge_port),
                "PREDMESH_CONTROLPLANE_LISTENER_HOST": "127.0.0.1",
                **self._edge_tls_env(),
                **self._upstream_tls_env(),
            },
        )
        self._launch(self.controlplane)
        # With mTLS Envoy fetches its config over mutual TLS with the "envoy" certificate.
        self.envoy = EnvoyProcess(
            self.controlplane.address, workdir=self._logs("envoy"), xds_tls=self.identity_files("envoy")
        )
        self._launch(self.envoy)
        # Ready means Envoy got its listener from the control plane and accepts connections.
        wait_until(lambda: port_open("127.0.0.1", self.edge_port), 20.0, "envoy edge listener")

    # -- credentials -----------------------------------------------------------------
    def _make_credentials(self) -> None:
        """The API key (reused across runs) and, with edge TLS, a local CA and the edge certificate."""
        if self.options.auth:
            key_file = self.state_dir / "api-key"
            if key_file.exists():
                self.api_key = key_file.read_text().strip()
            else:
                self.api_key = "pm_" + secrets.token_urlsafe(32)
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(self.api_key + "\n")
            self.write_api_keys({self.api_key: {"models": ["*"], "name": "local", "callback_hosts": ["127.0.0.1"]}})
        if (self.options.edge_tls and self.options.with_edge) or self.options.mtls:
            from predmesh.local.pki import LocalCA

            ca = LocalCA(self.pki_dir)
            if self.options.edge_tls and self.options.with_edge:
                ca.issue("edge", ["localhost", "127.0.0.1"])
                self.ca_path = ca.cert_path
            if self.options.mtls:
                for identity in MTLS_IDENTITIES:
                    ca.issue(identity, [identity, "localhost", "127.0.0.1"])
                self.mesh_ca = ca.cert_path

    def identity_files(self, identity: str) -> Any:
        """TlsFiles of a mesh identity ("gateway", "operator"...); None when mTLS is off."""
        if self.mesh_ca is None:
            return None
        from predmesh.common.tls import TlsFiles

        return TlsFiles(self.pki_dir / f"{identity}.crt", self.pki_dir / f"{identity}.key", self.mesh_ca)

    def _mtls_env(self, prefix: str, identity: str, serve: bool = True) -> dict[str, str]:
        """Env giving a service its certificate (serving mTLS unless `serve` is false)."""
        files = self.identity_files(identity)
        if files is None:
            return {}
        env = {
            f"{prefix}TLS_CERT_PATH": str(files.cert),
            f"{prefix}TLS_KEY_PATH": str(files.key),
            f"{prefix}TLS_CA_PATH": str(files.ca),
        }
        if not serve:
            env[f"{prefix}SERVER_TLS"] = "false"
        return env

    def write_api_keys(self, keys: dict[str, Any]) -> None:
        """Replace the gateway's key file (keys stored hashed); the gateway picks it up without a restart."""
        from services.gateway.core.auth import hashed_spec

        table = {k if k.startswith("sha256:") else hashed_spec(k): v for k, v in keys.items()}
        tmp = self.api_keys_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, indent=2))
        tmp.replace(self.api_keys_path)  # atomic: the watcher never reads half a file

    def _gateway_auth_env(self) -> dict[str, str]:
        if not self.options.auth:
            return {"PREDMESH_GATEWAY_ALLOW_ANONYMOUS": "true"}
        return {"PREDMESH_GATEWAY_API_KEYS_PATH": str(self.api_keys_path), "PREDMESH_GATEWAY_API_KEYS_POLL_MS": "200"}

    def _edge_tls_env(self) -> dict[str, str]:
        if self.ca_path is None:
            return {}
        return {
            "PREDMESH_CONTROLPLANE_EDGE_TLS_CERT_PATH": str(self.pki_dir / "edge.crt"),
            "PREDMESH_CONTROLPLANE_EDGE_TLS_KEY_PATH": str(self.pki_dir / "edge.key"),
            "PREDMESH_CONTROLPLANE_EDGE_TLS_POLL_S": "0.5",
        }

    def _upstream_tls_env(self) -> dict[str, str]:
        """Envoy's client certificate for the gateway hop (served over SDS by the control plane)."""
        files = self.identity_files("envoy")
        if files is None:
            return {}
        return {
            "PREDMESH_CONTROLPLANE_UPSTREAM_TLS_CERT_PATH": str(files.cert),
            "PREDMESH_CONTROLPLANE_UPSTREAM_TLS_KEY_PATH": str(files.key),
            "PREDMESH_CONTROLPLANE_UPSTREAM_TLS_CA_PATH": str(files.ca),
        }

    def _logs(self, name: str) -> Path:
        return self.state_dir / "logs" / name

    def _env(self, **values: str) -> dict[str, str]:
        env = {"PYTHONUNBUFFERED": "1", **self.options.extra_env, **values}
        env.setdefault("PYTHONPATH", os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")])))
        return env

    def _service(self, name: str, env: dict[str, str], port: int = 0, instance: str = "") -> PythonService:
        """A `python -m services.<name>.app` process on a free (or given) loopback port, called `instance`.

        With mTLS, the services in MTLS_SERVERS serve mutual TLS with their own certificate (the
        readiness probe presents the operator's); the gateway only calls with its certificate."""
        port = port or free_port()
        prefix = f"PREDMESH_{name.upper()}_"
        instance = instance or name
        tls_env = self._mtls_env(prefix, name, serve=name in MTLS_SERVERS) if name in MTLS_IDENTITIES else {}
        if self.sink_otlp_port and name != "sink" and f"{prefix}OTLP_ENDPOINT" not in self.options.extra_env:
            tls_env[f"{prefix}OTLP_ENDPOINT"] = f"127.0.0.1:{self.sink_otlp_port}"
        service = PythonService(
            instance,
            f"services.{name}.app",
            port,
            self._env(**{f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port), **tls_env, **env}),
            workdir=self._logs(instance),
        )
        if name in MTLS_SERVERS:
            service.probe_tls = self.identity_files("operator")
        return service

    def _replicas(self, name: str, env: dict[str, str], count: int) -> list[PythonService]:
        """`count` processes of service `name` (`name-0`, `name-1`... when more than one), each on its own
        port; replicas after the first get their own free /metrics port when one is configured (readable
        from each service's environment)."""
        metrics_port = f"PREDMESH_{name.upper()}_METRICS_PORT"
        return [
            self._service(
                name,
                env
                if i == 0 or metrics_port not in self.options.extra_env
                else {**env, metrics_port: str(free_port())},
                instance=f"{name}-{i}" if count > 1 else name,
            )
            for i in range(max(1, count))
        ]

    def _launch(self, *procs: ManagedProcess) -> None:
        """Start processes concurrently; each is recorded for stop() once it is running."""
        with ThreadPoolExecutor(max_workers=max(1, len(procs))) as pool:
            futures = [pool.submit(proc.start) for proc in procs]
            errors = []
            for proc, fut in zip(procs, futures, strict=True):
                try:
                    fut.result()
                    self._started.append(proc)
                except Exception as err:
                    errors.append(err)
        if errors:
            raise errors[0]

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        while self._started:
            proc = self._started.pop()
            try:
                proc.stop()
            except Exception:  # keep stopping the rest
                log.exception("stopping %s failed", proc.name)
        if self.background_group is not None:  # empty now: its processes are stopped
            self.background_group.remove()
            self.background_group = None

    def describe(self) -> dict[str, str]:
        """Addresses of everything that runs, for printing."""
        out: dict[str, str] = {}
        if self.envoy:
            out["edge (Envoy: gRPC + HTTP/JSON)"] = self.edge_address
            out["edge TLS CA certificate"] = str(self.ca_path) if self.ca_path else "none (plaintext edge)"
        if self.api_key:
            out["API key file"] = str(self.state_dir / "api-key")
        for gw in self.gateways:
            out[f"{gw.name} (gRPC PredictionService)"] = gw.address
        for proc in self.features_replicas:
            out[f"{proc.name} (gRPC FeatureService)"] = proc.address
        for proc in self.inference_replicas:
            out[f"{proc.name} (gRPC InferenceService)"] = proc.address
        for proc in self.background:
            idle = ", idle cpu cgroup" if proc.cpu_group is not None else ""
            out[f"{proc.name} (background tier, nice {proc.niceness}{idle})"] = proc.address
        if self.triton:
            out["triton (KServe v2 gRPC; GPU pool)"] = self.triton.grpc_address  # type: ignore[attr-defined]
        for worker in self.ort_workers:
            out[f"{worker.name} (KServe v2 gRPC; CPU pool)"] = worker.address
        if self.logger:
            out["logger (gRPC LoggerService)"] = self.logger.address
        if self.ingest:
            out["feature ingestion (topic feature-events)"] = self.ingest.address
        if self.monitor:
            out["drift monitor (Prometheus /metrics)"] = f"http://127.0.0.1:{self.monitor_metrics_port}/metrics"
        if self.sink:
            out["analytics sink (gRPC AnalyticsService)"] = self.sink.address
            out["local traces (OTLP/gRPC into the sink)"] = f"127.0.0.1:{self.sink_otlp_port}"
        if self.controlplane:
            out["control plane (xDS ADS)"] = self.controlplane.address
            out["control plane admin API (operator cert)"] = f"127.0.0.1:{self.controlplane_admin_port}"
        if self.redis:
            out["redis"] = self.redis.url
        if self.redis_cluster:
            out["redis cluster (3 masters + 3 replicas)"] = self.redis_cluster.url
        if self.broker:
            out["kafka (tansu) bootstrap"] = self.bootstrap_servers
        out["routing (edit: applies live)"] = str(self.routing_path)
        if self.batch_jobs_on:
            out["batch jobs (files only under)"] = str(self.batch_dir)
        if self.mesh_ca:
            out["mTLS (internal hops; operator cert)"] = str(self.pki_dir / "operator.crt")
        out["logs"] = str(self.state_dir / "logs")
        return out

    def __enter__(self) -> LocalMesh:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _balanced_target(replicas: list[PythonService]) -> str:
    """A gRPC target over every replica: `ipv4:a,b` with the clients' round_robin policy (one address: as is)."""
    if len(replicas) == 1:
        return replicas[0].address
    return "ipv4:" + ",".join(r.address for r in replicas)
