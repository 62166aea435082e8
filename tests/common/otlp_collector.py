"""A real OTLP/gRPC trace collector for tests: opentelemetry-proto's TraceService on a free port.

Importing this module at all is the packaging check: if xds-protos' old copy of
`opentelemetry/proto` shadows opentelemetry-proto's, the collector service module or
`InstrumentationScope` is missing and the import fails.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope  # noqa: F401 - the trap's symptom


@dataclass(frozen=True)
class CollectedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, object]
    links: tuple[tuple[str, str], ...]


def _value(v: object) -> object:
    kind = v.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(v, kind) if kind else None


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every exported span; `start()` returns the port; thread-safe reads via `spans()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[CollectedSpan] = []
        self.exports = 0
        self._server: grpc.Server | None = None
        self.port = 0

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: object) -> object:
        got = []
        for rs in request.resource_spans:
            attrs = {a.key: _value(a.value) for a in rs.resource.attributes}
            service = str(attrs.get("service.name", ""))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        CollectedSpan(
                            service=service,
                            name=s.name,
                            kind=s.kind,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in s.links),
                        )
                    )
        with self._lock:
            self._spans.extend(got)
            self.exports += 1
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[CollectedSpan]:
        with self._lock:
            return list(self._spans)

    def start(self, credentials: grpc.ServerCredentials | None = None) -> int:
        """Serve on a free loopback port (TLS with `credentials`); returns the port."""
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        if credentials is None:
            self.port = self._server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self._server.start()
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0)
            self._server = None
