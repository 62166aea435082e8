"""Composition root of the control plane: cache, publisher, endpoint sources, gRPC server.

When an Envoy NACKs the current version (and `rollback_on_nack`), the app republishes
the last config that a node fully ACKed, as a new version, so the control plane
serves the last good config again (to that Envoy and to any Envoy that joins later).

Lifecycle (predmesh.common.app.ServiceApp): `ControlPlaneApp(settings)`, `await start()`
(publishes the first snapshot, starts endpoint sources and the config-file watcher, then
serves ADS and the admin API), `await stop()` (server first, then the watcher and the
sources); a failed start closes what it opened. In-process callers (tests, local
orchestration) may use `update_config`, `patch_config` and `set_endpoints`; remote
ones use the admin API (`transport.admin.AdminClient`) or edit the config file. All
methods run on the event loop that called `start()`.

Run: `python -m services.controlplane.app` (settings from PREDMESH_CONTROLPLANE_*).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import yaml
from envoy.service.discovery.v3 import ads_pb2_grpc

from predmesh.common.app import ServiceApp, run_app
from predmesh.common.filewatch import FileWatcher
from predmesh.common.grpcserver import GrpcServer
from services.controlplane.core.cache import SnapshotCache, by_node_cluster
from services.controlplane.core.config import EdgeTls, Endpoint, MeshConfig, Tracing, default_config
from services.controlplane.core.descriptors import prediction_descriptor_set
from services.controlplane.core.endpoints import EndpointSource, KubernetesEndpointSource
from services.controlplane.core.publisher import MeshPublisher
from services.controlplane.core.snapshot import Snapshot
from services.controlplane.core.status import Nack, NodeStatus, StatusRegistry
from services.controlplane.settings import ControlPlaneSettings
from services.controlplane.transport.admin import SERVICE as ADMIN_SERVICE
from services.controlplane.transport.admin import AdminServicer, add_admin_to_server
from services.controlplane.transport.ads import AdsServicer

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def _read_config_file(path: Path) -> tuple[float, Any]:
    """(mtime, parsed data) of a YAML/JSON file. Blocking: call in a thread."""
    mtime = path.stat().st_mtime
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return mtime, data


def _check_key_pair(contents: list[bytes]) -> tuple[bytes, bytes]:
    """(certificate chain, key) after checking that they are PEM and belong together (blocking)."""
    import ssl
    import tempfile

    cert, key = contents
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        key_file.chmod(0o600)
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)  # raises on a mismatch
    return cert, key


def _descriptor_set_or_none() -> bytes | None:
    try:
        return prediction_descriptor_set()
    except Exception:  # generated code unusable: serve gRPC without JSON transcoding
        log.exception("no descriptor set for PredictionService; JSON transcoding disabled")
        return None


def config_from_settings(settings: ControlPlaneSettings) -> MeshConfig:
    """The default config: one gateway cluster from `gateway_endpoints`, tracing if a collector is set."""
    endpoints = [Endpoint.parse(e) for e in settings.gateway_endpoints.split(",") if e.strip()]
    config = default_config(endpoints, settings.listener_port).model_copy(
        update={"listener_host": settings.listener_host}
    )
    if settings.edge_tls_cert_path and settings.edge_tls_key_path:
        config = config.model_copy(update={"tls": EdgeTls(enabled=True)})
    if settings.upstream_tls_cert_path and settings.upstream_tls_key_path and settings.upstream_tls_ca_path:
        clusters = {n: c.model_copy(update={"mtls": True}) for n, c in config.clusters.items()}
        config = config.model_copy(update={"clusters": clusters})
    collector = settings.otlp_collector or settings.otlp_endpoint
    if collector:
        config = config.model_copy(update={"tracing": Tracing(collector=collector)})
    return config


class ControlPlaneApp(ServiceApp[ControlPlaneSettings]):
    """The xDS control plane: ADS and the admin API on two gRPC servers (ports), one edge snapshot."""

    name = "control plane"

    def __init__(self, settings: ControlPlaneSettings | None = None, config: MeshConfig | None = None) -> None:
        super().__init__(settings or ControlPlaneSettings())
        self.cache = SnapshotCache(node_key=by_node_cluster)
        self.status = StatusRegistry()
        self._config_mtime: float | None = None
        if config is None and self.settings.config_path is not None:
            self._config_mtime, data = _read_config_file(self.settings.config_path)
            config = MeshConfig.parse(data)
        self.publisher = MeshPublisher(
            self.cache,
            self.settings.node_cluster,
            config or config_from_settings(self.settings),
            descriptor_set=_descriptor_set_or_none(),
        )
        self.ads = AdsServicer(self.cache, self.status)
        self.admin_server: GrpcServer | None = None
        self._sources: dict[str, tuple[Any, EndpointSource]] = {}
        self.status.on_ack(self._on_ack)
        self.status.on_nack(self._on_nack)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._empty_clusters: list[str] = []

    # -- lifecycle (ServiceApp) ------------------------------------------------------
    async def _open_certificates(self, stack: AsyncExitStack) -> None:
        """Watch the edge certificate and Envoy's upstream (gateway hop) certificate: served over SDS."""
        s = self.settings
        if s.edge_tls_cert_path and s.edge_tls_key_path:
            secret = self.publisher.config.tls.secret_name
            edge: FileWatcher[tuple[bytes, bytes]] = FileWatcher(
                [s.edge_tls_cert_path, s.edge_tls_key_path],
                _check_key_pair,
                lambda pair: self._on_certificate(secret, pair),
                s.edge_tls_poll_s,
                name=f"edge certificate {s.edge_tls_cert_path}",
            )
            stack.push_async_callback(edge.stop)
            await edge.start()
        if s.upstream_tls_cert_path and s.upstream_tls_key_path and s.upstream_tls_ca_path:
            upstream: FileWatcher[tuple[bytes, bytes, bytes]] = FileWatcher(
                [s.upstream_tls_cert_path, s.upstream_tls_key_path, s.upstream_tls_ca_path],
                lambda contents: (*_check_key_pair(contents[:2]), contents[2]),
                self._on_upstream_certificate,
                s.edge_tls_poll_s,
                name=f"upstream certificate {s.upstream_tls_cert_path}",
            )
            stack.push_async_callback(upstream.stop)
            await upstream.start()

    async def open(self, stack: AsyncExitStack) -> None:
        await self._open_certificates(stack)
        self.publisher.publish()
        stack.push_async_callback(self._stop_sources)
        await self._sync_sources()
        stack.push_async_callback(self._cancel_tasks)
        s = self.settings
        if s.config_path is not None and s.config_poll_s > 0:
            self._spawn(self._watch_config_file(s.config_path))
        # With the tls_* files both ports serve mutual TLS: ADS only to Envoy's identity
        # (`ads_allowed_clients`), the admin API on its own port only to operators.
        ads_rules = {f"/{ADS_SERVICE}/*": list(s.ads_allowed_clients)}
        server = GrpcServer(s.model_copy(update={"allowed_clients": ads_rules}))
        server.add_servicer(ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server, self.ads, ADS_SERVICE)
        admin_rules = {f"/{ADMIN_SERVICE}/*": list(s.admin_allowed_clients)}
        admin = GrpcServer(
            s.model_copy(
                update={"port": s.admin_port, "metrics_port": None, "health_port": None, "allowed_clients": admin_rules}
            )
        )
        admin.add_servicer(
            add_admin_to_server, AdminServicer(self.publisher, self.status, self._sync_sources), ADMIN_SERVICE
        )
        stack.push_async_callback(self._forget_admin)
        stack.push_async_callback(admin.stop)
        self.admin_server = admin
        await admin.start()
        await self.serve(stack, server)
        self._empty_clusters = []  # the server starts SERVING
        await self._follow_endpoint_health()
        self._spawn(self._watch_endpoint_health())
        log.info(
            "control plane serving ADS on %s, admin API on %s (node cluster %r)",
            self.address,
            self.admin_address,
            s.node_cluster,
        )

    async def _forget_admin(self) -> None:
        self.admin_server = None

    @property
    def admin_address(self) -> str:
        if self.admin_server is None:
            raise RuntimeError("control plane is not started")
        return self.admin_server.address

    async def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _stop_sources(self) -> None:
        for _, source in list(self._sources.values()):
            await source.stop()
        self._sources.clear()

    @property
    def version(self) -> str:
        return self.publisher.version

    # -- in-process change API ----------------------------------------------------
    async def update_config(self, config: MeshConfig) -> Snapshot:
        snapshot = self.publisher.apply(config)
        await self._sync_sources()
        return snapshot

    async def patch_config(self, patch: dict[str, Any]) -> Snapshot:
        snapshot = self.publisher.patch(patch)
        await self._sync_sources()
        return snapshot

    def set_endpoints(self, cluster: str, endpoints: Iterable[Endpoint]) -> Snapshot | None:
        """Override `cluster`'s endpoints (as an endpoint source would)."""
        return self.publisher.set_endpoints(cluster, endpoints)

    # -- internals -------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_certificate(self, name: str, pair: tuple[bytes, bytes]) -> None:
        try:
            snapshot = self.publisher.set_secret(name, *pair)
        except Exception:
            log.exception("new edge certificate not published")
            return
        if snapshot is not None:
            log.info("edge certificate %s rotated: version %s", name, snapshot.version)

    def _on_upstream_certificate(self, files: tuple[bytes, bytes, bytes]) -> None:
        cert, key, ca = files
        config = self.publisher.config
        try:
            self.publisher.set_secrets({config.upstream_cert_secret: (cert, key), config.upstream_ca_secret: (ca, b"")})
        except Exception:
            log.exception("new upstream certificate not published")

    def _on_ack(self, node: NodeStatus) -> None:
        snapshot = self.publisher.snapshot
        if node.node_key != self.settings.node_cluster or snapshot is None:
            return
        if all(node.acked.get(t) == v for t, v in snapshot.versions.items()):
            self.publisher.confirm(snapshot.version)

    def _on_nack(self, node: NodeStatus, nack: Nack) -> None:
        snapshot = self.publisher.snapshot
        if not self.settings.rollback_on_nack or snapshot is None or node.node_key != self.settings.node_cluster:
            return
        if nack.version == snapshot.type_version(nack.type_url):
            try:
                self.publisher.rollback()
            except Exception:
                log.exception("rollback after NACK failed")

    def _on_endpoints(self, cluster: str, endpoints: tuple[Endpoint, ...]) -> None:
        try:
            self.publisher.set_endpoints(cluster, endpoints)
        except Exception:
            log.exception("endpoints for %s rejected", cluster)

    async def _sync_sources(self) -> None:
        """Run one Kubernetes source per cluster that asks for one; stop the others."""
        wanted = {n: c.kubernetes for n, c in self.publisher.config.clusters.items() if c.kubernetes}
        for name in list(self._sources):
            if self._sources[name][0] != wanted.get(name):
                _, source = self._sources.pop(name)
                await source.stop()
                self.publisher.forget_endpoints(name)
        for name, discovery in wanted.items():
            if name not in self._sources:
                source = KubernetesEndpointSource(name, discovery)
                self._sources[name] = (discovery, source)
                try:
                    await source.start(self._on_endpoints)
                except Exception:
                    log.exception("cannot start Kubernetes endpoint discovery for %s", name)

    async def _follow_endpoint_health(self) -> None:
        """NOT_SERVING while a routed cluster has no endpoints (e.g. discovery has not succeeded yet)."""
        empty = self.publisher.empty_routed_clusters()
        if empty != self._empty_clusters:
            if empty:
                log.error("routed cluster(s) without endpoints: %s; health NOT_SERVING", empty)
            else:
                log.info("every routed cluster has endpoints; health SERVING")
            self._empty_clusters = empty
            if self.server is not None:
                await self.server.set_serving(not empty)

    async def _watch_endpoint_health(self, interval_s: float = 0.5) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self._follow_endpoint_health()

    async def _watch_config_file(self, path: Path) -> None:
        while True:
            await asyncio.sleep(self.settings.config_poll_s)
            try:
                mtime = (await asyncio.to_thread(path.stat)).st_mtime
                if mtime == self._config_mtime:
                    continue
                self._config_mtime, data = await asyncio.to_thread(_read_config_file, path)
                snapshot = await self.update_config(MeshConfig.parse(data))
                log.info("config file %s changed: version %s", path, snapshot.version)
            except Exception:
                log.exception("config file %s not applied; keeping version %s", path, self.version)


def main() -> None:
    run_app(ControlPlaneSettings, ControlPlaneApp)


if __name__ == "__main__":
    main()
