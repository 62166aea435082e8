"""Pluggable sources of upstream endpoints.

An `EndpointSource` reports the current endpoints of one cluster by calling
`on_change(cluster, endpoints)` on the event loop that started it, once at start and
again on every change. Lifecycle: `await start(on_change)`, then `await stop()`.

- `StaticEndpointSource`: a fixed list (local runs, tests).
- `KubernetesEndpointSource`: the ready addresses of a Service's EndpointSlices,
  watched with the `kubernetes` client from inside the cluster. The client is
  imported lazily (the optional extra `predmesh[kubernetes]`); its blocking watch runs
  in a daemon thread and hands results to the loop with `call_soon_threadsafe`.
  Everything that can fail (the package missing, no in-cluster config, API errors,
  a dropped watch) is retried with exponential back-off (`retry_s` doubling up to
  `retry_max_s`, reset after a successful list); `start()` never fails, and until a
  first list succeeds the cluster has no endpoints (the app reports NOT_SERVING).
  `endpoints_from_slices` is the pure translation, tested without a cluster.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from services.controlplane.core.config import Endpoint, KubernetesDiscovery

log = logging.getLogger(__name__)

EndpointsCallback = Callable[[str, tuple[Endpoint, ...]], None]


class EndpointSource(Protocol):
    """Reports one cluster's endpoints; see the module docstring for the contract."""

    cluster: str

    async def start(self, on_change: EndpointsCallback) -> None: ...

    async def stop(self) -> None: ...


class StaticEndpointSource:
    """A fixed endpoint list, reported once."""

    def __init__(self, cluster: str, endpoints: Iterable[Endpoint]) -> None:
        self.cluster = cluster
        self.endpoints = tuple(endpoints)

    async def start(self, on_change: EndpointsCallback) -> None:
        on_change(self.cluster, self.endpoints)

    async def stop(self) -> None:
        return None


def endpoints_from_slices(slices: Iterable[Any], port_name: str | None = None) -> tuple[Endpoint, ...]:
    """Ready endpoints of discovery.k8s.io/v1 EndpointSlice objects (kubernetes client models).

    An endpoint counts when `conditions.ready` is true or unset (the API's meaning of
    unset); terminating endpoints report ready=false. The port is the one named
    `port_name`, or the slice's first port. FQDN slices are skipped (EDS needs IPs).
    """
    found: set[Endpoint] = set()
    for slc in slices:
        if getattr(slc, "address_type", "IPv4") not in ("IPv4", "IPv6"):
            continue
        port = _slice_port(getattr(slc, "ports", None) or [], port_name)
        if port is None:
            continue
        for ep in getattr(slc, "endpoints", None) or []:
            conditions = getattr(ep, "conditions", None)
            ready = getattr(conditions, "ready", None) if conditions is not None else None
            if ready is False:
                continue
            for address in getattr(ep, "addresses", None) or []:
                found.add(Endpoint(host=address, port=port))
    return tuple(sorted(found, key=lambda e: (e.host, e.port)))


def _slice_port(ports: list[Any], port_name: str | None) -> int | None:
    for port in ports:
        if port_name is None or getattr(port, "name", None) == port_name:
            return int(port.port) if getattr(port, "port", None) else None
    return None


class KubernetesEndpointSource:
    """Watches the EndpointSlices of one Service (label kubernetes.io/service-name)."""

    def __init__(
        self,
        cluster: str,
        discovery: KubernetesDiscovery,
        api_factory: Callable[[], Any] | None = None,
        retry_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        self.cluster = cluster
        self.discovery = discovery
        self._api_factory = api_factory or _in_cluster_api
        self._retry_s = retry_s
        self._retry_max_s = retry_max_s
        self.failures = 0  # consecutive failed attempts (API client, list or watch)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None

    async def start(self, on_change: EndpointsCallback) -> None:
        loop = asyncio.get_running_loop()

        def report(endpoints: tuple[Endpoint, ...]) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(on_change, self.cluster, endpoints)

        self._thread = threading.Thread(
            target=self._run_with_retries, args=(report,), name=f"k8s-endpoints-{self.cluster}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)

    def _backoff(self, what: str, err: BaseException) -> None:
        self.failures += 1
        delay = min(self._retry_s * 2 ** (self.failures - 1), self._retry_max_s)
        log.warning(
            "endpoint discovery for cluster %s (%s): %s failed (%s); retry %d in %.1fs",
            self.cluster,
            self.discovery.service,
            what,
            err,
            self.failures,
            delay,
        )
        self._stopping.wait(delay)

    def _run_with_retries(self, report: Callable[[tuple[Endpoint, ...]], None]) -> None:
        api: Any = None
        while api is None and not self._stopping.is_set():
            try:
                api = self._api_factory()
            except Exception as err:
                self._backoff("creating the Kubernetes API client", err)
        if api is not None:
            self._run(api, report)

    def _run(self, api: Any, report: Callable[[tuple[Endpoint, ...]], None]) -> None:
        selector = f"kubernetes.io/service-name={self.discovery.service}"
        while not self._stopping.is_set():
            slices: dict[str, Any] = {}
            try:
                listed = api.list_namespaced_endpoint_slice(self.discovery.namespace, label_selector=selector)
                for slc in listed.items:
                    slices[slc.metadata.name] = slc
                report(endpoints_from_slices(slices.values(), self.discovery.port_name))
                self.failures = 0
                from kubernetes import watch  # lazy: optional dependency

                self._watch = watch.Watch()
                for event in self._watch.stream(
                    api.list_namespaced_endpoint_slice,
                    self.discovery.namespace,
                    label_selector=selector,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=300,
                ):
                    obj = event["object"]
                    if event["type"] == "DELETED":
                        slices.pop(obj.metadata.name, None)
                    else:
                        slices[obj.metadata.name] = obj
                    report(endpoints_from_slices(slices.values(), self.discovery.port_name))
                    if self._stopping.is_set():
                        break
            except Exception as err:  # API hiccups: log, back off, list again
                self._backoff("listing/watching EndpointSlices", err)


def _in_cluster_api() -> Any:
    try:
        from kubernetes import client, config
    except ImportError as err:
        raise RuntimeError(
            "the `kubernetes` package is needed for Kubernetes endpoint discovery: pip install 'predmesh[kubernetes]'"
        ) from err
    config.load_incluster_config()
    return client.DiscoveryV1Api()
