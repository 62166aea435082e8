"""Descriptor set for Envoy's grpc_json_transcoder, built at runtime from generated code.

Our protos carry no `google.api.http` annotations, so we add REST-style rules to the
*copy* of the file descriptor we hand to Envoy: `POST /v1/predict`,
`POST /v1/predict:batch`, `POST /v1/predict:async`, `GET /v1/models/{model}/health`, each with the gRPC-style path
(`POST /predmesh.v1.PredictionService/Predict`, JSON body) as an additional binding,
because the transcoder's `auto_mapping` only covers methods without annotations
(it stays on for any other method). The protos
and the generated modules are untouched; no protoc runs.

Plain JSON context: in the copy, `"context"` of PredictRequest and BatchItem names the
`plain_context` field (google.protobuf.Struct: `{"amount": 120.5}`) instead of the typed map
(`JSON_FIELDS`), so HTTP callers write JSON scalars; the gateway still reads a value written
the typed way (`{"number_value": 120.5}`). gRPC callers keep both fields under their own names.
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf import descriptor_pb2

log = logging.getLogger(__name__)

# Extra HTTP rules per fully-qualified method: (verb, path); body "*" except for GET (none).
HTTP_RULES: dict[str, tuple[str, str]] = {
    "predmesh.v1.PredictionService.Predict": ("post", "/v1/predict"),
    "predmesh.v1.PredictionService.PredictBatch": ("post", "/v1/predict:batch"),
    "predmesh.v1.PredictionService.PredictAsync": ("post", "/v1/predict:async"),
    "predmesh.v1.OutcomeService.RecordOutcome": ("post", "/v1/outcomes"),
    # GET: the path variable fills the request, there is no body.
    "predmesh.v1.PredictionService.GetPrediction": ("get", "/v1/predictions/{request_id}"),
    "predmesh.v1.PredictionService.GetModelHealth": ("get", "/v1/models/{model}/health"),
    "predmesh.v1.BatchJobService.SubmitBatchJob": ("post", "/v1/batch-jobs"),
    "predmesh.v1.BatchJobService.GetBatchJob": ("get", "/v1/batch-jobs/{job_id}"),
    "predmesh.v1.BatchJobService.CancelBatchJob": ("post", "/v1/batch-jobs/{job_id}:cancel"),
}

# JSON field renames in Envoy's copy, per message: {JSON name: field it means}; the field that had
# that name is left out of the copy (so JSON callers cannot reach it, and no two fields share a name).
JSON_FIELDS: dict[str, dict[str, str]] = {
    "predmesh.v1.PredictRequest": {"context": "plain_context"},
    "predmesh.v1.BatchItem": {"context": "plain_context"},
}


def _rename_json_fields(file_proto: Any, renames: dict[str, dict[str, str]]) -> None:
    for message in file_proto.message_type:
        fields = renames.get(f"{file_proto.package}.{message.name}")
        if not fields:
            continue
        for json_name, field_name in fields.items():
            shadowed = [f for f in message.field if f.name == json_name]
            for f in shadowed:
                message.field.remove(f)
            for f in message.field:
                if f.name == field_name:
                    f.name = json_name
                    f.json_name = json_name


def _files_in_dependency_order(root: Any) -> list[Any]:
    ordered: list[Any] = []
    seen: set[str] = set()

    def visit(fd: Any) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            visit(dep)
        ordered.append(fd)

    visit(root)
    return ordered


def file_descriptor_set(*roots: Any, http_rules: dict[str, tuple[str, str]] | None = None) -> bytes:
    """Serialized FileDescriptorSet of `roots` (FileDescriptors) and everything they import.

    `http_rules` (default `HTTP_RULES`) become google.api.http options on the copies.
    """
    rules = HTTP_RULES if http_rules is None else http_rules
    try:
        from google.api import annotations_pb2, http_pb2
    except ImportError:  # googleapis-common-protos absent: auto_mapping still works
        annotations_pb2 = http_pb2 = None  # type: ignore[assignment]
        log.warning("google.api protos not importable; only auto-mapped JSON paths will work")
    if annotations_pb2 is not None and rules:
        roots = (annotations_pb2.DESCRIPTOR, *roots)
    files: list[Any] = []
    for root in roots:  # dependencies before dependants: Envoy builds its pool in this order
        for fd in _files_in_dependency_order(root):
            if all(f.name != fd.name for f in files):
                files.append(fd)
    out = descriptor_pb2.FileDescriptorSet()
    for fd in files:
        proto = out.file.add()
        fd.CopyToProto(proto)
        _rename_json_fields(proto, JSON_FIELDS)
        if annotations_pb2 is None or not rules:
            continue
        touched = False
        for service in proto.service:
            for method in service.method:
                rule = rules.get(f"{proto.package}.{service.name}.{method.name}")
                if rule is None:
                    continue
                verb, path = rule
                http_rule = http_pb2.HttpRule(body="" if verb == "get" else "*")  # a GET carries no body
                setattr(http_rule, verb, path)
                # auto_mapping skips annotated methods, so keep the gRPC-style path as a binding too.
                grpc_path = f"/{proto.package}.{service.name}/{method.name}"
                http_rule.additional_bindings.add(post=grpc_path, body="*")
                method.options.Extensions[annotations_pb2.http].CopyFrom(http_rule)
                touched = True
        if touched and annotations_pb2.DESCRIPTOR.name not in proto.dependency:
            proto.dependency.append(annotations_pb2.DESCRIPTOR.name)
    return out.SerializeToString()


def prediction_descriptor_set() -> bytes:
    """Descriptor set for predmesh.v1.PredictionService, OutcomeService and BatchJobService (imports the
    generated modules lazily)."""
    from predmesh.v1 import batchjobs_pb2, outcomes_pb2, prediction_pb2

    return file_descriptor_set(prediction_pb2.DESCRIPTOR, outcomes_pb2.DESCRIPTOR, batchjobs_pb2.DESCRIPTOR)
