"""OTLP/gRPC export really works in this environment (catches the xds-protos packaging trap)."""

from __future__ import annotations

import importlib.metadata

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.common.otlp_collector import OtlpCollector


def test_opentelemetry_proto_is_the_installed_distribution() -> None:
    """The `opentelemetry/proto` on disk is opentelemetry-proto's, not xds-protos' old copy."""
    import opentelemetry.proto.common.v1.common_pb2 as common_pb2

    dist = importlib.metadata.distribution("opentelemetry-proto")
    files = {str(f) for f in dist.files or []}
    assert "opentelemetry/proto/common/v1/common_pb2.py" in files
    assert hasattr(common_pb2, "InstrumentationScope")
    assert dist.version == importlib.metadata.version("opentelemetry-sdk")


def test_spans_reach_an_otlp_grpc_collector() -> None:
    collector = OtlpCollector()
    port = collector.start()
    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-check"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    try:
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("parent") as parent, tracer.start_as_current_span("child"):
            pass
        assert provider.force_flush(10_000)
        spans = {s.name: s for s in collector.spans()}
        assert set(spans) == {"parent", "child"}
        assert spans["child"].parent_span_id == spans["parent"].span_id
        assert spans["child"].trace_id == format(parent.get_span_context().trace_id, "032x")
        assert spans["parent"].service == "otlp-check"
    finally:
        provider.shutdown()
        collector.stop()
