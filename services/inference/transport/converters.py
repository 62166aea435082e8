"""Protobuf <-> domain conversions for the inference service (no logic beyond mapping)."""

from __future__ import annotations

from collections.abc import Sequence

from predmesh.common.values import scalar_from_value, scalar_to_value
from predmesh.models.lifecycle import ReloadResult
from predmesh.models.postprocess import Prediction
from predmesh.models.preprocess import FeatureValue
from predmesh.v1 import common_pb2, inference_pb2
from services.inference.core.service import ModelInfo


def rows_from_proto(rows: Sequence[inference_pb2.Row]) -> list[list[FeatureValue]]:
    """Each Value as its scalar; an unset Value is None (no value)."""
    return [[scalar_from_value(v) for v in row.values] for row in rows]


def value_to_proto(value: FeatureValue) -> common_pb2.Value:
    """Inverse of `scalar_from_value` (for clients and tests): None -> an unset Value; ints become numbers."""
    return common_pb2.Value() if value is None else scalar_to_value(value)


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
