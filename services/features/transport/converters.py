"""Protobuf <-> domain conversions for the features service (no logic beyond mapping)."""

from __future__ import annotations

from predmesh.v1 import common_pb2, features_pb2
from services.features.core.assembler import EntityRequest, FeatureQuery, FeatureVector
from services.features.core.spec import DType, FeatureGroup, FeatureSpec, Scalar


def value_from_pb(value: common_pb2.Value) -> Scalar | None:
    """A predmesh.v1.Value as a Python scalar; `None` when no kind is set."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def value_to_pb(value: Scalar) -> common_pb2.Value:
    """bool -> bool_value, str -> string_value, int/float -> number_value."""
    if isinstance(value, bool):
        return common_pb2.Value(bool_value=value)
    if isinstance(value, str):
        return common_pb2.Value(string_value=value)
    return common_pb2.Value(number_value=float(value))


def query_from_pb(request: features_pb2.GetFeaturesRequest) -> FeatureQuery:
    return FeatureQuery(
        entity_type=request.entity_type,
        entities=[
            EntityRequest(
                entity_id=entity.entity_id,
                context={name: value_from_pb(value) for name, value in entity.context.items()},
            )
            for entity in request.entities
        ],
        features=list(request.features),
    )


def vectors_to_pb(vectors: list[FeatureVector]) -> features_pb2.GetFeaturesResponse:
    return features_pb2.GetFeaturesResponse(
        vectors=[
            features_pb2.FeatureVector(
                entity_id=vector.entity_id,
                values=[value_to_pb(value) for value in vector.values],
                missing=vector.missing,
                invalid=vector.invalid,
                entity_unknown=vector.entity_unknown,
            )
            for vector in vectors
        ]
    )


def spec_to_pb(spec: FeatureSpec) -> features_pb2.FeatureSpec:
    message = features_pb2.FeatureSpec(
        name=spec.name,
        dtype=spec.dtype.value,
        source=spec.source.value,
        default=value_to_pb(spec.default),
        categories=list(spec.category_order) if spec.dtype is DType.CATEGORY else [],
    )
    if spec.min is not None:
        message.has_min = True
        message.min = spec.min
    if spec.max is not None:
        message.has_max = True
        message.max = spec.max
    return message


def group_to_pb(group: FeatureGroup) -> features_pb2.FeatureGroupInfo:
    return features_pb2.FeatureGroupInfo(
        entity_type=group.entity_type, features=[spec_to_pb(spec) for spec in group.features]
    )
