"""Protobuf <-> domain conversions for the inference service (no logic beyond mapping)."""

from __future__ import annotations

from collections.abc import Sequence

from predmesh.v1 import common_pb2, inference_pb2
from services.inference.core.lifecycle import ReloadResult
from services.inference.core.postprocess import Prediction
from services.inference.core.preprocess import FeatureValue
from services.inference.core.service import ModelInfo


def value_from_proto(value: common_pb2.Value) -> FeatureValue:
    """number -> float, string -> str, bool -> bool, unset -> None (no value)."""
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    result: FeatureValue = getattr(value, kind)
    return result


def rows_from_proto(rows: Sequence[inference_pb2.Row]) -> list[list[FeatureValue]]:
    return [[value_from_proto(v) for v in row.values] for row in rows]


def value_to_proto(value: FeatureValue) -> common_pb2.Value:
    """Inverse of `value_from_proto` (for clients and tests); ints become numbers."""
    if value is None:
        return common_pb2.Value()
    if isinstance(value, bool):
        return common_pb2.Value(bool_value=value)
    if isinstance(value, str):
        return common_pb2.Value(string_value=value)
    return common_pb2.Value(number_value=float(value))


def row_to_proto(values: Sequence[FeatureValue]) -> inference_pb2.Row:
    return inference_pb2.Row(values=[value_to_proto(v) for v in values])


def prediction_to_proto(prediction: Prediction) -> common_pb2.Prediction:
    return common_pb2.Prediction(score=prediction.score, scores=prediction.scores, label=prediction.label)


def infer_response(model: str, version: str, predictions: Sequence[Prediction]) -> inference_pb2.InferResponse:
    return inference_pb2.InferResponse(
        model=model,
        model_version=version,
        predictions=[prediction_to_proto(p) for p in predictions],
    )


def model_info_to_proto(info: ModelInfo) -> inference_pb2.ModelInfo:
    return inference_pb2.ModelInfo(
        name=info.name,
        versions=info.versions,
        version=info.version,
        task=info.task,
        entity_type=info.entity_type,
        features=info.features,
        class_labels=info.class_labels,
        kind=info.kind,
    )


def reload_response(result: ReloadResult) -> inference_pb2.ReloadModelsResponse:
    return inference_pb2.ReloadModelsResponse(
        generation=result.generation,
        added=result.added,
        removed=result.removed,
        replaced=result.replaced,
        error=result.error,
    )
