"""OTLP/gRPC export really works in this environment (catches the xds-protos packaging trap)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from predmesh.common.settings import ServerSettings
from predmesh.common.telemetry import otlp_exporter
from predmesh.local.pki import LocalCA
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


def _export_one(settings: ServerSettings) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-tls-check"}))
    provider.add_span_processor(BatchSpanProcessor(otlp_exporter(settings)))
    try:
        with provider.get_tracer("test").start_as_current_span("over-tls"):
            pass
        provider.force_flush(10_000)
    finally:
        provider.shutdown()


@pytest.mark.parametrize("mutual", [False, True])
def test_spans_reach_a_tls_collector_with_the_configured_ca(tmp_path: Path, mutual: bool) -> None:
    ca = LocalCA(tmp_path / "pki")
    server = ca.issue("collector", ["collector", "localhost", "127.0.0.1"])
    client = ca.issue("gateway", ["gateway"])
    collector = OtlpCollector()
    port = collector.start(
        grpc.ssl_server_credentials(
            [(server.key.read_bytes(), server.cert.read_bytes())],
            root_certificates=ca.cert_path.read_bytes() if mutual else None,
            require_client_auth=mutual,
        )
    )
    try:
        endpoint = f"127.0.0.1:{port}"
        settings = ServerSettings(
            otlp_endpoint=endpoint,
            otlp_tls_ca_path=ca.cert_path,
            otlp_tls_cert_path=client.cert if mutual else None,
            otlp_tls_key_path=client.key if mutual else None,
        )
        _export_one(settings)
        assert [s.name for s in collector.spans()] == ["over-tls"]
    finally:
        collector.stop()


def test_otlp_client_certificate_needs_a_ca(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="otlp_tls_ca_path"):
        otlp_exporter(ServerSettings(otlp_endpoint="127.0.0.1:1", otlp_tls_cert_path=tmp_path / "c.crt"))
