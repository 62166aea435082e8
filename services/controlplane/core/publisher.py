"""Turns mesh-config and endpoint changes into new snapshot versions in the cache.

`MeshPublisher` owns the current `MeshConfig`, the endpoints discovered by endpoint
sources, and a version counter. Every accepted change builds resources, builds a
snapshot (types whose content did not change keep their version), and publishes it
with `cache.set_snapshot`, which pushes it to every connected Envoy of the node key.
A change that fails validation or the consistency check raises and leaves the
previous config and snapshot in place. Single event loop, synchronous, no locks.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from services.controlplane.core.cache import SnapshotCache
from services.controlplane.core.config import Endpoint, MeshConfig
from services.controlplane.core.resources import build_resources
from services.controlplane.core.snapshot import Snapshot

log = logging.getLogger(__name__)


class MeshPublisher:
    """Current config + discovered endpoints -> versioned snapshots for one node key."""

    def __init__(
        self,
        cache: SnapshotCache,
        node_key: str,
        config: MeshConfig,
        descriptor_set: bytes | None = None,
        build: Callable[..., dict[str, list[Any]]] = build_resources,
        version_prefix: str | None = None,
    ) -> None:
        self.cache = cache
        self.node_key = node_key
        self._config = config
        self._descriptor_set = descriptor_set
        self._build = build
        self._discovered: dict[str, tuple[Endpoint, ...]] = {}
        self._counter = 0
        # A per-process prefix keeps versions unique across control-plane restarts.
        self._prefix = secrets.token_hex(3) if version_prefix is None else version_prefix
        self._snapshot: Snapshot | None = None
        self._secrets: dict[str, tuple[bytes, bytes]] = {}
        self._good: tuple[MeshConfig, dict[str, tuple[Endpoint, ...]]] | None = None

    @property
    def config(self) -> MeshConfig:
        return self._config

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def version(self) -> str:
        return self._snapshot.version if self._snapshot else ""

    def endpoints(self) -> Mapping[str, tuple[Endpoint, ...]]:
        """Effective endpoints per cluster (discovered ones override the config's static list)."""
        return {name: self._discovered.get(name, c.endpoints) for name, c in self._config.clusters.items()}

    def empty_routed_clusters(self) -> list[str]:
        """Clusters some route sends traffic to that have no endpoints (Envoy would answer 503/UNAVAILABLE)."""
        effective = self.endpoints()
        routed = dict.fromkeys(c for route in self._config.routes for c in route.clusters())
        return [name for name in routed if not effective.get(name)]

    def publish(self) -> Snapshot:
        """Publish the current state as the next version (also used for the first one)."""
        return self._publish(self._config, self._discovered)

    def apply(self, config: MeshConfig) -> Snapshot:
        """Replace the whole config; returns the published snapshot."""
        return self._publish(config, self._discovered)

    def patch(self, patch: dict[str, Any]) -> Snapshot:
        """Apply an RFC 7386 merge patch to the current config."""
        return self._publish(self._config.merge_patch(patch), self._discovered)

    def set_endpoints(self, cluster: str, endpoints: Iterable[Endpoint]) -> Snapshot | None:
        """Endpoints discovered for `cluster` (endpoint sources call this). None when unchanged."""
        eps = tuple(endpoints)
        if self._discovered.get(cluster) == eps:
            return None
        discovered = {**self._discovered, cluster: eps}
        return self._publish(self._config, discovered)

    @property
    def last_good_config(self) -> MeshConfig | None:
        """The config of the latest version that a node fully ACKed (None before any)."""
        return self._good[0] if self._good else None

    def confirm(self, version: str) -> None:
        """A node accepted every type of `version`: remember it as the last good state."""
        if self._snapshot is not None and self._snapshot.version == version:
            self._good = (self._config, self._discovered)

    def rollback(self) -> Snapshot | None:
        """Republish the last good state as a new version; None when there is nothing to undo."""
        if self._good is None or self._good == (self._config, self._discovered):
            return None
        config, discovered = self._good
        log.warning("rolling back from version %s to the last good config", self.version)
        return self._publish(config, discovered)

    def set_secret(self, name: str, certificate_chain: bytes, private_key: bytes) -> Snapshot | None:
        """Serve a TLS certificate over SDS as `name` (an empty key = a CA bundle for verification);
        rotation re-sends only SDS. None when unchanged or before the first publish (which includes it)."""
        return self.set_secrets({name: (certificate_chain, private_key)})

    def set_secrets(self, secrets: Mapping[str, tuple[bytes, bytes]]) -> Snapshot | None:
        """Several secrets in one version (a certificate and the CA that must change with it)."""
        merged = {**self._secrets, **secrets}
        if merged == self._secrets:
            return None
        self._secrets = merged
        if self._snapshot is None:
            return None
        return self._publish(self._config, self._discovered)

    def forget_endpoints(self, cluster: str) -> None:
        self._discovered.pop(cluster, None)

    def _publish(self, config: MeshConfig, discovered: dict[str, tuple[Endpoint, ...]]) -> Snapshot:
        resources = self._build(config, {**discovered}, self._descriptor_set, secrets=self._secrets)
        version = f"{self._prefix}-{self._counter + 1}" if self._prefix else str(self._counter + 1)
        snapshot = Snapshot.build(version, resources, previous=self._snapshot)
        self.cache.set_snapshot(self.node_key, snapshot)  # raises InconsistentSnapshot, keeping the old one
        self._counter += 1
        self._config, self._discovered, self._snapshot = config, discovered, snapshot
        log.info("published version %s (types: %s)", version, dict(snapshot.versions))
        return snapshot
