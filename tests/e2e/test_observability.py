"""Observability of the real mesh: one connected trace per request, trace id in Kafka, /metrics scraped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc
from confluent_kafka import Consumer, Message

from predmesh.common import telemetry
from predmesh.local.kafka import DEV_CONSUMER_CONFIG
from predmesh.local.mesh import LocalMesh
from predmesh.v1 import common_pb2, events_pb2, prediction_pb2, prediction_pb2_grpc
from tests.common.otlp_collector import CollectedSpan
from tests.common.prometheus_scrape import Metrics, scrape
from tests.e2e.conftest import Observability

T = TypeVar("T")
SERVER, CLIENT = 2, 3  # OTLP span kinds


def eventually(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def record_headers(msg: Message) -> dict[str, bytes]:
    """A consumed record's headers: confluent-kafka gives (key, value) pairs; predmesh sets no null values."""
    headers = msg.headers() or []
    assert isinstance(headers, list), f"unexpected header container {type(headers)}"
    out: dict[str, bytes] = {}
    for key, value in headers:
        assert isinstance(value, bytes), f"header {key!r} has no bytes value: {value!r}"
        out[key] = value
    return out


def kafka_record(bootstrap: str, request_id: str) -> tuple[events_pb2.PredictionEvent, dict[str, bytes]]:
    consumer = Consumer(
        {
            **DEV_CONSUMER_CONFIG,
            "bootstrap.servers": bootstrap,
            "group.id": f"obs-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["predictions"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            event = events_pb2.PredictionEvent.FromString(msg.value())
            if event.request_id == request_id:
                return event, record_headers(msg)
    finally:
        consumer.close()
    raise AssertionError(f"no Kafka record for {request_id}")


def test_one_connected_trace_from_envoy_to_the_logger(mesh: LocalMesh, observability: Observability) -> None:
    request_id = f"trace-{uuid.uuid4().hex[:8]}"
    entity = "u00151"  # not used by other e2e tests: a features cache miss, so Redis is read
    with mesh.edge_channel() as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(
            prediction_pb2.PredictRequest(
                request_id=request_id,
                model="fraud",
                entity_id=entity,
                context={"amount": common_pb2.Value(number_value=42.0)},
            ),
            timeout=10,
        )
    event, headers = kafka_record(mesh.bootstrap_servers, request_id)
    trace_id = event.trace_id
    assert len(trace_id) == 32 and trace_id != "0" * 32
    assert telemetry.trace_id_of_headers(list(headers.items())) == trace_id  # Kafka header carries the trace
    assert headers["trace_id"].decode() == trace_id
    assert event.features["amount"].number_value == 42.0  # sampled feature values (sample = 1.0)

    expected = {
        ("predmesh-edge", None),
        ("predmesh-gateway", ("predmesh.v1.PredictionService/Predict", SERVER)),
        ("predmesh-gateway", ("predmesh.v1.FeatureService/GetFeatures", CLIENT)),
        ("predmesh-features", ("predmesh.v1.FeatureService/GetFeatures", SERVER)),
        ("predmesh-features", ("redis.pipeline", None)),
        ("predmesh-gateway", ("predmesh.v1.InferenceService/Infer", CLIENT)),
        ("predmesh-inference", ("predmesh.v1.InferenceService/Infer", SERVER)),
        ("predmesh-logger", ("predmesh.logger/journal", None)),
    }

    def matches(span: CollectedSpan, want: tuple[str, tuple[str, int | None] | None]) -> bool:
        service, what = want
        if span.service != service:
            return False
        if what is None:
            return True
        name, kind = what
        return span.name == name and (kind is None or span.kind == kind)

    def complete() -> list[CollectedSpan] | None:
        spans = [s for s in observability.collector.spans() if s.trace_id == trace_id]
        return spans if all(any(matches(s, w) for s in spans) for w in expected) else None

    try:
        spans = eventually(complete, 20, "every span of the trace")
    except AssertionError:
        got = sorted((s.service, s.name, s.kind) for s in observability.collector.spans() if s.trace_id == trace_id)
        raise AssertionError(f"trace {trace_id} incomplete; got {got}") from None
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if not s.parent_span_id]
    assert [r.service for r in roots] == ["predmesh-edge"]  # Envoy started the trace
    for span in spans:  # connected: every parent is a span of this trace
        assert not span.parent_span_id or span.parent_span_id in by_id, span

    def one(service: str, name: str, kind: int | None = None) -> CollectedSpan:
        return next(s for s in spans if s.service == service and s.name == name and (kind is None or s.kind == kind))

    gw = one("predmesh-gateway", "predmesh.v1.PredictionService/Predict", SERVER)
    assert by_id[gw.parent_span_id].service == "predmesh-edge"  # Envoy propagated W3C traceparent
    feat_client = one("predmesh-gateway", "predmesh.v1.FeatureService/GetFeatures", CLIENT)
    feat_server = one("predmesh-features", "predmesh.v1.FeatureService/GetFeatures", SERVER)
    redis_span = one("predmesh-features", "redis.pipeline")
    inf_client = one("predmesh-gateway", "predmesh.v1.InferenceService/Infer", CLIENT)
    inf_server = one("predmesh-inference", "predmesh.v1.InferenceService/Infer", SERVER)
    journal = one("predmesh-logger", "predmesh.logger/journal")
    assert feat_client.parent_span_id == gw.span_id and inf_client.parent_span_id == gw.span_id
    assert feat_server.parent_span_id == feat_client.span_id
    assert redis_span.parent_span_id == feat_server.span_id
    assert inf_server.parent_span_id == inf_client.span_id
    assert journal.parent_span_id == gw.span_id
    assert gw.attributes["rpc.grpc.status_code"] == 0
    # The Kafka record's traceparent names the logger's journal span: consumers continue the trace.
    assert headers["traceparent"].decode().split("-")[2] == journal.span_id

    # fraud runs on the ORT worker behind the orchestrator's micro-batcher: the request waited
    # in the queue (a child span), and its batch is a trace of its own LINKED to the request,
    # continued over KServe v2 gRPC into the worker. (The shadow call to fraud:2 is batched too.)
    queue_wait = [s for s in spans if s.name == "queue_wait"]
    assert queue_wait and {by_id[s.parent_span_id].name for s in queue_wait} == {"predmesh.v1.InferenceService/Infer"}
    linked = queue_wait[0].parent_span_id

    def batch_trace() -> list[CollectedSpan] | None:
        every = observability.collector.spans()
        batch = next((s for s in every if s.name == "predmesh.inference/batch" and (trace_id, linked) in s.links), None)
        if batch is None:
            return None
        members = [s for s in every if s.trace_id == batch.trace_id]
        return members if any(s.service == "predmesh-ortworker" for s in members) else None

    members = eventually(batch_trace, 20, "the batch's spans")
    batch = next(s for s in members if s.name == "predmesh.inference/batch")
    assert batch.service == "predmesh-inference" and not batch.parent_span_id
    rows = batch.attributes["batch.rows"]
    assert batch.attributes["predmesh.model"] == "fraud" and isinstance(rows, int) and rows >= 1
    call = next(s for s in members if s.name == "inference.GRPCInferenceService/ModelInfer" and s.kind == CLIENT)
    assert call.parent_span_id == batch.span_id
    worker = next(s for s in members if s.service == "predmesh-ortworker")
    assert worker.kind == SERVER and worker.parent_span_id == call.span_id


def test_every_service_serves_metrics(mesh: LocalMesh, observability: Observability) -> None:
    with mesh.gateway_channel() as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(prediction_pb2.PredictRequest(model="fraud", entity_id="u00152"), timeout=10)
        try:
            stub.Predict(prediction_pb2.PredictRequest(model="no_such_model", entity_id="u1"), timeout=10)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
    ports = observability.metrics_ports

    def handled(service: str, grpc_service: str, method: str, code: str) -> float:
        key = (
            "predmesh_grpc_server_handled_total",
            (("grpc_code", code), ("grpc_method", method), ("grpc_service", grpc_service)),
        )
        return scrape(ports[service]).get(key, 0.0)

    assert handled("gateway", "predmesh.v1.PredictionService", "Predict", "OK") >= 1
    assert handled("gateway", "predmesh.v1.PredictionService", "Predict", "NOT_FOUND") >= 1
    assert handled("features", "predmesh.v1.FeatureService", "GetFeatures", "OK") >= 1
    assert handled("inference", "predmesh.v1.InferenceService", "Infer", "OK") >= 1
    inference = scrape(ports["inference"])
    fraud = (("model", "fraud"), ("version", "1"))
    assert inference.get(("predmesh_inference_batch_size_count", fraud), 0) >= 1  # batches of the ORT worker
    assert inference.get(("predmesh_inference_queue_wait_seconds_count", fraud), 0) >= 1
    assert ("predmesh_inference_queue_depth", fraud) in inference
    gateway = scrape(ports["gateway"])
    assert any(name == "predmesh_grpc_server_handling_seconds_bucket" for name, _ in gateway)
    assert any(name == "predmesh_gateway_predictions_total" for name, _ in gateway)
    features = scrape(ports["features"])
    # No context: the request-time features (amount, channel, hour_of_day...) fall back to their defaults.
    assert any(name == "predmesh_features_defaults_used_total" and v > 0 for (name, _), v in features.items())

    def logger_delivered() -> Metrics | None:
        metrics = scrape(ports["logger"])
        return metrics if metrics.get(("predmesh_logger_events_produced_total", ())) else None

    logger = eventually(logger_delivered, 15, "logger deliveries")
    assert logger[("predmesh_logger_kafka_up", ())] == 1


def test_drift_monitor_reads_the_prediction_log_and_flags_a_shifted_feature(mesh: LocalMesh) -> None:
    """Real path: gateway -> logger -> Kafka -> monitor, PSI against fraud:1's training reference.json."""
    assert mesh.monitor is not None
    with mesh.gateway_channel() as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        for i in range(60):
            stub.Predict(
                prediction_pb2.PredictRequest(
                    model="fraud",
                    version="1",
                    entity_id=f"u{i:05d}",
                    # Every request the same amount: one bin of the training distribution.
                    context={"amount": common_pb2.Value(number_value=42.0)},
                ),
                timeout=10,
            )
    fraud = (("model", "fraud"), ("version", "1"))

    def evaluated() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        m = scrape(mesh.monitor_metrics_port)
        return (
            m
            if m.get(("predmesh_monitor_window_events", fraud), 0) >= 60
            and (("predmesh_monitor_score_psi", fraud) in m)
            else None
        )

    metrics = eventually(evaluated, 30, "the monitor's window of fraud:1")
    amount_psi = metrics[("predmesh_monitor_feature_psi", (("feature", "amount"), *fraud))]
    assert amount_psi > 0.25  # a constant amount is far from the training spread
    assert metrics[("predmesh_monitor_drift", fraud)] == 1
    assert metrics[("predmesh_monitor_score_psi", fraud)] >= 0.0
    assert metrics[("predmesh_monitor_events_consumed_total", ())] >= 60
