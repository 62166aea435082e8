"""Client interceptors that add fixed metadata (the API key) to every unary call.

Used by `LocalMesh.edge_channel()` / `gateway_channel()` so tests and tools get channels
that authenticate without passing `metadata=` at every call site. Stateless; thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, base: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


def _merged(base: Any, extra: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    present = list(base.metadata or [])
    names = {k for k, _ in present}
    return present + [(k, v) for k, v in extra if k not in names]


class MetadataInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = list(metadata)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(_Details(details, _merged(details, self._metadata)), request)


class AioMetadataInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = list(metadata)

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        metadata = grpc.aio.Metadata(*_merged(details, self._metadata))
        new = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return await continuation(new, request)
