"""The FeatureService servicer: protobuf in, core call, protobuf out.

Errors are raised as `PredmeshError`s and mapped to status codes by the shared
`ErrorInterceptor`; nothing here touches the gRPC context.

GetFeatures answers with the serialized `GetFeaturesResponse` (`wire.encode_response`: the
same bytes protobuf writes, without building the message) and `register` installs it
without a response serializer; on the wire and for every client nothing changes.
"""

from __future__ import annotations

import grpc

from predmesh.v1 import features_pb2
from services.features.core.assembler import FeatureAssembler
from services.features.transport.converters import group_to_pb, query_from_pb
from services.features.transport.wire import encode_response

SERVICE_NAME = features_pb2.DESCRIPTOR.services_by_name["FeatureService"].full_name


class FeatureServicer:
    """Thin adapter over `FeatureAssembler`; stateless, one per server. Install it with `register`."""

    def __init__(self, assembler: FeatureAssembler) -> None:
        self._assembler = assembler

    async def GetFeatures(self, request: features_pb2.GetFeaturesRequest, context: grpc.aio.ServicerContext) -> bytes:
        """The serialized GetFeaturesResponse."""
        vectors = await self._assembler.get_features(query_from_pb(request))
        return encode_response(vectors)

    async def DescribeGroup(
        self, request: features_pb2.DescribeGroupRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.FeatureGroupInfo:
        return group_to_pb(self._assembler.describe(request.entity_type))


def register(servicer: FeatureServicer, server: grpc.aio.Server) -> None:
    """What the generated `add_FeatureServiceServicer_to_server` does, except that GetFeatures
    returns its response already serialized (no response serializer)."""
    handlers = {
        "GetFeatures": grpc.unary_unary_rpc_method_handler(
            servicer.GetFeatures,
            request_deserializer=features_pb2.GetFeaturesRequest.FromString,
            response_serializer=None,
        ),
        "DescribeGroup": grpc.unary_unary_rpc_method_handler(
            servicer.DescribeGroup,
            request_deserializer=features_pb2.DescribeGroupRequest.FromString,
            response_serializer=features_pb2.FeatureGroupInfo.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
