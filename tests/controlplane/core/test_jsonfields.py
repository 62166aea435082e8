"""The edge's unknown-field check: accepted names per request message, built from the transcoder's descriptors."""

from __future__ import annotations

from services.controlplane.core.descriptors import HTTP_RULES, prediction_descriptor_set
from services.controlplane.core.jsonfields import FREE, SCALAR, accepted_fields, lua_for, rest_routes


def test_rest_routes_name_each_body_carrying_path_and_its_request_message() -> None:
    routes = rest_routes(prediction_descriptor_set(), HTTP_RULES)
    assert routes["/v1/predict"] == "predmesh.v1.PredictRequest"
    assert routes["/v1/predict:batch"] == "predmesh.v1.PredictBatchRequest"
    assert not any(path.startswith("/predmesh.v1.") for path in routes)  # gRPC-style bindings are not checked


def test_accepted_fields_follow_the_json_names_envoy_sees() -> None:
    schema = accepted_fields(prediction_descriptor_set(), ["predmesh.v1.PredictBatchRequest"])
    request = schema["predmesh.v1.PredictBatchRequest"]
    assert request["items"] == "m:predmesh.v1.BatchItem" and request["model"] == SCALAR
    assert request["request_id"] == request["requestId"] == SCALAR  # proto name and lowerCamel JSON name
    item = schema["predmesh.v1.BatchItem"]
    # "context" is the plain-JSON Struct in Envoy's copy (any keys); the typed map is not reachable by JSON
    assert item["context"] == FREE and "plain_context" not in item
    assert "bogus" not in item


def test_the_lua_source_embeds_routes_and_schema() -> None:
    source = lua_for(prediction_descriptor_set(), HTTP_RULES)
    assert '["/v1/predict"] = "predmesh.v1.PredictRequest"' in source
    assert "function envoy_on_request(handle)" in source
