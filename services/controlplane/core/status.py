"""What each connected Envoy last accepted (ACK) or rejected (NACK), per resource type.

Written by the ADS streams, read by the admin API, the app and tests. Single event
loop, no locking. Listeners registered with `on_ack` / `on_nack` are called
synchronously from the stream that got the ACK/NACK and must not block.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Nack:
    type_url: str
    version: str
    message: str
    at: float


@dataclass
class NodeStatus:
    node_id: str
    node_key: str
    connected: bool = True
    acked: dict[str, str] = field(default_factory=dict)
    last_nack: Nack | None = None
    nacks: int = 0


NackListener = Callable[[NodeStatus, Nack], None]
AckListener = Callable[[NodeStatus], None]


class StatusRegistry:
    """Per-node ACK/NACK bookkeeping."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeStatus] = {}
        self._nack_listeners: list[NackListener] = []
        self._ack_listeners: list[AckListener] = []

    def connected(self, node_id: str, node_key: str) -> NodeStatus:
        status = self._nodes.get(node_id)
        if status is None:
            status = self._nodes[node_id] = NodeStatus(node_id, node_key)
        status.connected = True
        status.node_key = node_key
        return status

    def disconnected(self, node_id: str) -> None:
        if node_id in self._nodes:
            self._nodes[node_id].connected = False

    def ack(self, node_id: str, type_url: str, version: str) -> None:
        status = self._nodes.get(node_id)
        if status is None:
            return
        status.acked[type_url] = version
        for listener in list(self._ack_listeners):
            try:
                listener(status)
            except Exception:  # a listener bug must not break the stream
                log.exception("ACK listener failed")

    def nack(self, node_id: str, type_url: str, version: str, message: str) -> None:
        status = self._nodes.get(node_id)
        if status is None:
            return
        nack = Nack(type_url, version, message, time.time())
        status.last_nack = nack
        status.nacks += 1
        log.warning("node %s rejected %s version %s: %s", node_id, type_url.rsplit(".", 1)[-1], version, message)
        for listener in list(self._nack_listeners):
            try:
                listener(status, nack)
            except Exception:  # a listener bug must not break the stream
                log.exception("NACK listener failed")

    def on_nack(self, listener: NackListener) -> None:
        self._nack_listeners.append(listener)

    def on_ack(self, listener: AckListener) -> None:
        self._ack_listeners.append(listener)

    def get(self, node_id: str) -> NodeStatus | None:
        return self._nodes.get(node_id)

    def all(self) -> list[NodeStatus]:
        return [self._nodes[k] for k in sorted(self._nodes)]
