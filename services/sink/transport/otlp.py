"""A local OTLP/gRPC trace receiver: spans the mesh's services export go into the `spans` table.

`OtlpReceiver(store, host, port)`: `await start()` serves opentelemetry-proto's TraceService on
its own plaintext port (the services' OTLP exporters speak plaintext: `OTLP_ENDPOINT`); each
Export becomes one batched insert (in a worker thread). `await stop(grace_s)` stops serving.
For `predmesh up` only: a production cluster sends spans to its own collector.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from services.sink.core.schema import SPAN_COLUMNS
from services.sink.core.store import AnalyticsStore

log = logging.getLogger(__name__)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("string_value", "bool_value", "int_value", "double_value") else None


def span_rows(request: trace_service_pb2.ExportTraceServiceRequest, inserted_s: float) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for rs in request.resource_spans:
        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
        service = str(resource.get("service.name", ""))
        for ss in rs.scope_spans:
            for s in ss.spans:
                attributes = {a.key: _value(a.value) for a in s.attributes}
                rows.append(
                    (
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex(),
                        service,
                        s.name,
                        int(s.kind),
                        s.start_time_unix_nano / 1e9,
                        max(0, s.end_time_unix_nano - s.start_time_unix_nano) / 1e6,
                        int(s.status.code),
                        json.dumps(attributes, default=str),
                        inserted_s,
                    )
                )
    return rows


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: AnalyticsStore, host: str, port: int) -> None:
        self._store = store
        self._bind = f"{host}:{port}"
        self._server: grpc.aio.Server | None = None
        self.port = 0
        self.spans = 0

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        rows = span_rows(request, time.time())
        if rows:
            try:
                await asyncio.to_thread(self._store.insert, "spans", SPAN_COLUMNS, rows)
            except Exception as err:  # the exporter retries UNAVAILABLE
                log.warning("spans not stored: %s", err)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "span store unavailable")
            self.spans += len(rows)
        return trace_service_pb2.ExportTraceServiceResponse()

    async def start(self) -> int:
        self._server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(self._bind)
        await self._server.start()
        return self.port

    async def stop(self, grace_s: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
