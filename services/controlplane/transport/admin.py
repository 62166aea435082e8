"""Admin API: read and change the mesh config of a running control plane over gRPC.

Service `predmesh.controlplane.v1.ControlPlaneAdmin`, every method unary with
`google.protobuf.Struct` request and response (no .proto of our own needed):

- `GetConfig({})`                      -> `{"version": str, "config": {...}}`
- `SetConfig({"config": {...}})`       -> `{"version": str}` (whole-config replacement)
- `PatchConfig({"patch": {...}})`      -> `{"version": str}` (RFC 7386 merge patch)
- `GetStatus({})`                      -> `{"version": str, "nodes": [...]}` (ACK/NACK per node)

An invalid config is INVALID_ARGUMENT and an inconsistent one FAILED_PRECONDITION
(through the shared ErrorInterceptor); either way the running version is kept.
`AdminClient` is the matching async client (one channel, opened and closed by its owner).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from predmesh.common.grpcclient import channel
from predmesh.common.tls import TlsFiles
from services.controlplane.core.config import MeshConfig
from services.controlplane.core.publisher import MeshPublisher
from services.controlplane.core.status import StatusRegistry
from services.controlplane.errors import InvalidConfig

SERVICE = "predmesh.controlplane.v1.ControlPlaneAdmin"


def _to_dict(msg: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(msg)


def _to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(data)
    return out


class AdminServicer:
    """Thin: Struct -> publisher call -> Struct."""

    def __init__(
        self,
        publisher: MeshPublisher,
        status: StatusRegistry,
        after_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._publisher = publisher
        self._status = status
        self._after_change = after_change

    async def _changed(self) -> None:
        if self._after_change is not None:
            await self._after_change()

    async def get_config(self, request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        return _to_struct({"version": self._publisher.version, "config": self._publisher.config.to_dict()})

    async def set_config(self, request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        body = _to_dict(request)
        if not isinstance(body.get("config"), dict):
            raise InvalidConfig("SetConfig needs a `config` object")
        snapshot = self._publisher.apply(MeshConfig.parse(body["config"]))
        await self._changed()
        return _to_struct({"version": snapshot.version})

    async def patch_config(self, request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        body = _to_dict(request)
        if not isinstance(body.get("patch"), dict):
            raise InvalidConfig("PatchConfig needs a `patch` object")
        snapshot = self._publisher.patch(body["patch"])
        await self._changed()
        return _to_struct({"version": snapshot.version})

    async def get_status(self, request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        nodes = []
        for node in self._status.all():
            entry: dict[str, Any] = {
                "id": node.node_id,
                "key": node.node_key,
                "connected": node.connected,
                "acked": dict(node.acked),
                "nacks": node.nacks,
            }
            if node.last_nack is not None:
                entry["last_nack"] = {
                    "type_url": node.last_nack.type_url,
                    "version": node.last_nack.version,
                    "message": node.last_nack.message,
                }
            nodes.append(entry)
        return _to_struct({"version": self._publisher.version, "nodes": nodes})

    def handler(self) -> grpc.GenericRpcHandler:
        methods: dict[str, Callable[..., Awaitable[struct_pb2.Struct]]] = {
            "GetConfig": self.get_config,
            "SetConfig": self.set_config,
            "PatchConfig": self.patch_config,
            "GetStatus": self.get_status,
        }
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    fn,
                    request_deserializer=struct_pb2.Struct.FromString,
                    response_serializer=struct_pb2.Struct.SerializeToString,
                )
                for name, fn in methods.items()
            },
        )


def add_admin_to_server(servicer: AdminServicer, server: grpc.aio.Server) -> None:
    server.add_generic_rpc_handlers((servicer.handler(),))


class AdminClient:
    """Async client of the admin API. Owns one channel: use `async with` or `close()`."""

    def __init__(self, address: str, timeout_s: float = 5.0, tls: TlsFiles | None = None) -> None:
        """`tls`: an operator's certificate when the admin API serves mutual TLS."""
        self._channel = channel(address, tls)
        self._timeout_s = timeout_s

    async def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        call = self._channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=struct_pb2.Struct.SerializeToString,
            response_deserializer=struct_pb2.Struct.FromString,
        )
        return _to_dict(await call(_to_struct(body), timeout=self._timeout_s))

    async def get_config(self) -> dict[str, Any]:
        return await self._call("GetConfig", {})

    async def set_config(self, config: dict[str, Any]) -> str:
        return str((await self._call("SetConfig", {"config": config}))["version"])

    async def patch_config(self, patch: dict[str, Any]) -> str:
        return str((await self._call("PatchConfig", {"patch": patch}))["version"])

    async def get_status(self) -> dict[str, Any]:
        return await self._call("GetStatus", {})

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
