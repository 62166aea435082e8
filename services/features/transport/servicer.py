"""The FeatureService servicer: protobuf in, core call, protobuf out.

Errors are raised as `PredmeshError`s and mapped to status codes by the shared
`ErrorInterceptor`; nothing here touches the gRPC context.
"""

from __future__ import annotations

import grpc

from predmesh.v1 import features_pb2, features_pb2_grpc
from services.features.core.assembler import FeatureAssembler
from services.features.transport.converters import group_to_pb, query_from_pb, vectors_to_pb

SERVICE_NAME = features_pb2.DESCRIPTOR.services_by_name["FeatureService"].full_name


class FeatureServicer(features_pb2_grpc.FeatureServiceServicer):
    """Thin adapter over `FeatureAssembler`; stateless, one per server."""

    def __init__(self, assembler: FeatureAssembler) -> None:
        self._assembler = assembler

    async def GetFeatures(
        self, request: features_pb2.GetFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.GetFeaturesResponse:
        vectors = await self._assembler.get_features(query_from_pb(request))
        return vectors_to_pb(vectors)

    async def DescribeGroup(
        self, request: features_pb2.DescribeGroupRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.FeatureGroupInfo:
        return group_to_pb(self._assembler.describe(request.entity_type))


def register(servicer: FeatureServicer, server: grpc.aio.Server) -> None:
    features_pb2_grpc.add_FeatureServiceServicer_to_server(servicer, server)
