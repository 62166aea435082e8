"""ADS (State of the World, v3) servicer: nonces, versions, ACK and NACK — nothing else.

One `AdsStream` per Envoy connection. Incoming DiscoveryRequests and outgoing cache
responses meet on one asyncio queue and are handled in order by the stream's own
coroutine, so per-stream state needs no lock and the cache never touches the gRPC
stream. Per type URL the stream remembers the nonce and version it last sent:

- a request whose `response_nonce` is not the last one sent is stale and ignored;
- `error_detail` set: a NACK. Logged and recorded; the watch reopens at the version
  that was *sent*, so the rejected version is not re-sent and the next snapshot is;
- otherwise an ACK (or the first request): the watch reopens at the sent version, or
  at "" when the requested resource names changed (Envoy asks for a new EDS/RDS
  name with the same version, and must get an answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from services.controlplane.core.cache import Response, SnapshotCache, Watch
from services.controlplane.core.status import StatusRegistry

log = logging.getLogger(__name__)

_END = object()


@dataclass
class _TypeState:
    nonce: str = ""
    version: str = ""
    names: frozenset[str] = frozenset()
    watch: Watch | None = None


@dataclass
class AdsStream:
    """Protocol state of one ADS stream. `handle_request` returns nothing; responses
    come out of `to_discovery_response` for items the cache puts on `queue`."""

    cache: SnapshotCache
    status: StatusRegistry
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    node: Any = None
    types: dict[str, _TypeState] = field(default_factory=dict)
    _nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def handle_request(self, req: Any) -> None:
        if req.HasField("node") and self.node is None:
            self.node = req.node
            self.status.connected(self.node.id, self.cache.node_key(self.node))
            log.info("node %s (cluster %s) connected", self.node.id, self.node.cluster)
        if self.node is None:
            log.warning("discovery request without a node on a new stream; ignored")
            return
        state = self.types.setdefault(req.type_url, _TypeState())
        names = frozenset(req.resource_names)
        if req.response_nonce:
            if req.response_nonce != state.nonce:
                log.debug("stale nonce %s for %s (latest %s)", req.response_nonce, req.type_url, state.nonce)
                return
            if req.HasField("error_detail"):
                self.status.nack(self.node.id, req.type_url, state.version, req.error_detail.message)
                known = state.version
            else:
                self.status.ack(self.node.id, req.type_url, req.version_info)
                known = state.version if names == state.names else ""
        else:
            known = req.version_info
        state.names = names
        if state.watch is not None:
            self.cache.cancel_watch(state.watch)
        state.watch = self.cache.create_watch(self.node, req.type_url, names, known, self.queue)

    def to_discovery_response(self, resp: Response) -> Any | None:
        """The DiscoveryResponse for a cache answer, or None when the answer is outdated."""
        state = self.types.get(resp.type_url)
        if state is None or state.watch is None or state.watch.id != resp.watch_id:
            return None
        state.watch = None
        state.nonce = str(next(self._nonces))
        state.version = resp.version
        out = discovery_pb2.DiscoveryResponse(version_info=resp.version, type_url=resp.type_url, nonce=state.nonce)
        for res in resp.resources:
            out.resources.add().Pack(res)
        return out

    def close(self) -> None:
        for state in self.types.values():
            if state.watch is not None:
                self.cache.cancel_watch(state.watch)
                state.watch = None
        if self.node is not None:
            self.status.disconnected(self.node.id)


class AdsServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """AggregatedDiscoveryService over a SnapshotCache (SotW only; delta is UNIMPLEMENTED)."""

    def __init__(self, cache: SnapshotCache, status: StatusRegistry) -> None:
        self._cache = cache
        self._status = status
        self.streams = 0

    async def StreamAggregatedResources(self, request_iterator: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        stream = AdsStream(self._cache, self._status)
        reader = asyncio.create_task(self._read(request_iterator, stream.queue))
        self.streams += 1
        try:
            while True:
                item = await stream.queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Response):
                    out = stream.to_discovery_response(item)
                    if out is not None:
                        log.debug("send %s version %s nonce %s", out.type_url, out.version_info, out.nonce)
                        yield out
                else:
                    stream.handle_request(item)
        finally:
            self.streams -= 1
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            stream.close()
            if stream.node is not None:
                log.info("node %s disconnected", stream.node.id)

    @staticmethod
    async def _read(request_iterator: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
        try:
            async for req in request_iterator:
                queue.put_nowait(req)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the peer went away mid-read
            log.debug("ADS read ended: %r", err)
        queue.put_nowait(_END)
