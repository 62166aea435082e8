"""Through Envoy (gRPC and HTTP/JSON) and into Kafka: the full request path of the local mesh."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import grpc
import pytest
import yaml

from predmesh.local.mesh import LocalMesh
from predmesh.v1 import common_pb2, prediction_pb2, prediction_pb2_grpc
from tests.common.prometheus_scrape import scrape
from tests.e2e.conftest import Observability
from tests.e2e.kafka_util import collect_events


def predict(channel: grpc.Channel, request: prediction_pb2.PredictRequest) -> prediction_pb2.PredictResponse:
    with channel:
        return prediction_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)


def test_edge_and_gateway_give_the_same_answer(mesh: LocalMesh) -> None:
    assert mesh.edge_address != mesh.gateway_address
    request = prediction_pb2.PredictRequest(
        model="fraud_nn", entity_id="u00077", context={"amount": common_pb2.Value(number_value=90)}
    )
    via_edge = predict(mesh.edge_channel(), request)
    direct = predict(mesh.gateway_channel(), request)
    assert via_edge.prediction.score == pytest.approx(direct.prediction.score, abs=1e-12)
    assert via_edge.model_version == direct.model_version


def test_http_json_through_envoy(mesh: LocalMesh) -> None:
    body = json.dumps(
        {"model": "fraud", "version": "1", "entity_id": "u00003", "context": {"amount": {"number_value": 50}}}
    )
    req = urllib.request.Request(
        f"{mesh.edge_scheme}://localhost:{mesh.edge_port}/v1/predict",
        data=body.encode(),
        headers=mesh.http_headers(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10, context=mesh.ssl_context()) as resp:
        assert resp.status == 200
        payload = json.loads(resp.read())
    grpc_answer = predict(
        mesh.gateway_channel(),
        prediction_pb2.PredictRequest(
            model="fraud",
            version="1",
            entity_id="u00003",
            context={"amount": common_pb2.Value(number_value=50)},
        ),
    )
    assert payload["model_version"] == "1"
    assert payload["prediction"]["score"] == pytest.approx(grpc_answer.prediction.score, abs=1e-12)


def test_http_json_errors_keep_their_status(mesh: LocalMesh) -> None:
    body = json.dumps({"model": "no_such_model", "entity_id": "u1"}).encode()
    req = urllib.request.Request(
        f"{mesh.edge_scheme}://localhost:{mesh.edge_port}/v1/predict", data=body, headers=mesh.http_headers()
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10, context=mesh.ssl_context())
    assert info.value.code == 404  # NOT_FOUND mapped to HTTP by the transcoder
    assert "no_such_model" in info.value.read().decode()


def test_every_prediction_is_logged_to_kafka(mesh: LocalMesh) -> None:
    run = uuid.uuid4().hex[:8]
    responses = {}
    with mesh.edge_channel() as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        for i in range(20):
            rid = f"log-{run}-{i}"
            responses[rid] = stub.Predict(
                prediction_pb2.PredictRequest(request_id=rid, model="fraud_nn", entity_id=f"u{i:05d}"), timeout=10
            )
        batch = stub.PredictBatch(
            prediction_pb2.PredictBatchRequest(
                request_id=f"logb-{run}",
                model="fraud_nn",
                items=[prediction_pb2.BatchItem(entity_id=f"u{i:05d}") for i in range(5)],
            ),
            timeout=10,
        )
        for r in batch.results:
            responses[r.request_id] = r

    def complete(events: list) -> bool:
        return set(responses) <= {e.request_id for e in events}

    events = [e for e in collect_events(mesh.bootstrap_servers, "predictions", complete) if e.request_id in responses]
    assert {e.request_id for e in events} == set(responses)
    assert len(events) == len(responses)  # one record per scored entity, no duplicates in a healthy run
    for event in events:
        resp = responses[event.request_id]
        assert event.model == "fraud_nn" and event.model_version == resp.model_version
        assert event.entity_id == resp.entity_id and event.arm == resp.arm
        assert event.prediction.score == pytest.approx(resp.prediction.score)
        assert len(event.features_hash) == 64 and int(event.features_hash, 16) >= 0
        assert event.latency_ms > 0 and event.timestamp.seconds > 0
        assert list(event.defaulted_features) == list(resp.defaulted_features)


def shadow_ratio(mesh: LocalMesh, observability: Observability, ratio: float) -> None:
    """Set fraud's shadow_ratio in the live routing file and wait until the gateway applied it."""
    applied = ("predmesh_gateway_routing_reloads_total", (("result", "applied"),))
    port = observability.metrics_ports["gateway"]
    before = scrape(port).get(applied, 0.0)
    doc = yaml.safe_load(mesh.routing_path.read_text())
    doc["models"]["fraud"]["shadow_ratio"] = ratio
    mesh.routing_path.write_text(yaml.safe_dump(doc))
    deadline = time.monotonic() + 10
    while scrape(port).get(applied, 0.0) <= before:
        assert time.monotonic() < deadline, "routing change not applied"
        time.sleep(0.1)


def test_shadow_is_logged_to_its_topic_and_never_returned(mesh: LocalMesh, observability: Observability) -> None:
    # Demo routing: fraud 90% v1 / 10% v2, shadow v2 for 10% of requests; here every request
    # is shadowed, so every entity on v1 gets a shadow score from v2.
    run = uuid.uuid4().hex[:8]
    stable = {}
    shadow_ratio(mesh, observability, 1.0)
    try:
        with mesh.edge_channel() as channel:
            stub = prediction_pb2_grpc.PredictionServiceStub(channel)
            for i in range(30):
                rid = f"shadow-{run}-{i}"
                resp = stub.Predict(
                    prediction_pb2.PredictRequest(request_id=rid, model="fraud", entity_id=f"u{i:05d}"), timeout=10
                )
                assert resp.arm in ("stable", "canary") and resp.model_version in ("1", "2")
                if resp.model_version == "1":
                    stable[rid] = resp
    finally:
        shadow_ratio(mesh, observability, 0.1)
    assert stable

    def complete(events: list) -> bool:
        return set(stable) <= {e.request_id for e in events}

    shadows = [
        e
        for e in collect_events(mesh.bootstrap_servers, "shadow-predictions", complete)
        if e.request_id.startswith(f"shadow-{run}")
    ]
    assert {e.request_id for e in shadows} == set(stable)
    assert all(e.arm == "shadow" and e.model_version == "2" for e in shadows)
    primaries = collect_events(mesh.bootstrap_servers, "predictions", complete)
    assert all(e.arm != "shadow" for e in primaries)
