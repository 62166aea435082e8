"""The gateway's features client against a real gRPC server that answers badly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from predmesh.common.errors import Unavailable
from predmesh.common.grpcclient import insecure_channel
from predmesh.v1 import common_pb2, features_pb2, features_pb2_grpc
from services.gateway.transport.upstreams import FeaturesClient


class Scripted(features_pb2_grpc.FeatureServiceServicer):
    """Answers every GetFeatures with the vectors it was given."""

    def __init__(self) -> None:
        self.vectors: list[features_pb2.FeatureVector] = []

    async def GetFeatures(
        self, request: features_pb2.GetFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> features_pb2.GetFeaturesResponse:
        return features_pb2.GetFeaturesResponse(vectors=self.vectors)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Scripted, FeaturesClient]]:
    servicer = Scripted()
    server = grpc.aio.server()
    features_pb2_grpc.add_FeatureServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = insecure_channel(f"127.0.0.1:{port}")
    try:
        yield servicer, FeaturesClient(channel)
    finally:
        await channel.close()
        await server.stop(None)


async def test_well_formed_answer_becomes_rows(served: tuple[Scripted, FeaturesClient]) -> None:
    servicer, client = served
    servicer.vectors = [
        features_pb2.FeatureVector(entity_id="u1", values=[common_pb2.Value(number_value=2.5)], missing=["x"])
    ]
    rows = await client.get("user", [("u1", {})], ["x"], 5.0)
    assert [(r.entity_id, r.values, r.missing) for r in rows] == [("u1", (2.5,), ("x",))]


@pytest.mark.parametrize(
    "vector",
    [
        features_pb2.FeatureVector(entity_id="u1", values=[common_pb2.Value()]),  # a value with nothing set
        features_pb2.FeatureVector(entity_id="u1", values=[]),  # fewer values than features asked for
    ],
    ids=["unset-value", "missing-values"],
)
async def test_malformed_answer_is_the_dependency_failing(
    served: tuple[Scripted, FeaturesClient], vector: features_pb2.FeatureVector
) -> None:
    # The caller's request was fine: UNAVAILABLE (breaker + fallback), never INVALID_ARGUMENT or INTERNAL.
    servicer, client = served
    servicer.vectors = [vector]
    with pytest.raises(Unavailable, match="malformed response"):
        await client.get("user", [("u1", {})], ["x"], 5.0)
