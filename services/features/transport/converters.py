"""Protobuf <-> domain conversions for the features service (no logic beyond mapping)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from predmesh.common.values import scalar_from_value, scalar_to_value
from predmesh.featurestore.spec import DType, FeatureGroup, FeatureSpec
from predmesh.v1 import features_pb2
from services.features.core.assembler import EntityRequest, FeatureQuery, FeatureVector
from services.features.errors import BadEntities

_EMPTY: Mapping[str, Any] = MappingProxyType({})  # shared by entities without context or related ids


def query_from_pb(request: features_pb2.GetFeaturesRequest) -> FeatureQuery:
    related = request.related
    entities = request.entities
    if related and len(related) != len(entities):
        raise BadEntities(f"related has {len(related)} rows for {len(entities)} entities (empty or aligned)")
    return FeatureQuery(
        entity_type=request.entity_type,
        entities=[
            EntityRequest(
                entity.entity_id,
                {name: scalar_from_value(value) for name, value in entity.context.items()}
                if entity.context
                else _EMPTY,
                dict(related[index].ids) if related else _EMPTY,
            )
            for index, entity in enumerate(entities)
        ],
        features=tuple(request.features),
    )


def vectors_to_pb(vectors: list[FeatureVector]) -> features_pb2.GetFeaturesResponse:
    return features_pb2.GetFeaturesResponse(
        vectors=[
            features_pb2.FeatureVector(
                entity_id=vector.entity_id,
                values=[scalar_to_value(value) for value in vector.values],
                missing=vector.missing,
                invalid=vector.invalid,
                entity_unknown=vector.entity_unknown,
                store_missing=vector.store_missing,
                stale=vector.stale,
            )
            for vector in vectors
        ]
    )


def spec_to_pb(spec: FeatureSpec) -> features_pb2.FeatureSpec:
    message = features_pb2.FeatureSpec(
        name=spec.name,
        dtype=spec.dtype.value,
        source=spec.source.value,
        default=scalar_to_value(spec.default),
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
