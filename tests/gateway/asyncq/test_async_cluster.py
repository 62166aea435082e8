"""Durable PredictAsync with its results on a real local Redis Cluster (3 masters) and the real broker:
a gateway on the cluster accepts, scores, delivers the callback and answers polls, a duplicate
submission is scored once, and every key of the result store is in one slot (the `{predmesh:async}`
hash tag, so its MULTI and Lua script stay atomic)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis.cluster
from redis.crc import key_slot

from predmesh.local.kafka import TansuBroker
from predmesh.local.rediscluster import RedisCluster
from predmesh.v1 import jobs_pb2, prediction_pb2, prediction_pb2_grpc
from services.gateway.app import GatewayApp
from services.gateway.transport.async_store import CLUSTER_PREFIX
from tests.gateway.asyncq.support import AUTH, HoldingUpstreams, Names, gateway_settings, settings, until
from tests.gateway.asyncq.test_durable_async import poll, request


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(Path(tmp_path_factory.mktemp("async-cluster")), masters=3, replicas=0) as running:
        yield running


def _keys(cluster: RedisCluster) -> list[bytes]:
    client = redis.cluster.RedisCluster.from_url(cluster.url.replace("redis+cluster://", "redis://"))
    try:
        return list(client.scan_iter(match=CLUSTER_PREFIX.replace("{", "[{]") + "*", target_nodes="all"))
    finally:
        client.close()


async def test_a_gateway_on_the_cluster_scores_delivers_and_answers_polls(
    cluster: RedisCluster, tansu: TansuBroker, upstreams: HoldingUpstreams
) -> None:
    names = Names.fresh(tansu.bootstrap_servers)
    app = GatewayApp(settings(gateway_settings(tansu.bootstrap_servers, cluster.url, upstreams.address, names)))
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = prediction_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(2):  # the second submission of the same id is a duplicate: scored once
                accepted = await stub.PredictAsync(
                    prediction_pb2.PredictAsyncRequest(request=request("c-1"), callback_target=upstreams.address),
                    metadata=AUTH,
                    timeout=10,
                )
                assert accepted.request_id == "c-1"
            await asyncio.wait_for(upstreams.delivered.wait(), 20)
            assert upstreams.deliveries[0].response.prediction.score == pytest.approx(0.42)
            polled = await poll(stub, "c-1")
            assert polled.state == jobs_pb2.PREDICTION_STATE_DONE
            assert polled.response.prediction.score == pytest.approx(0.42)
            with pytest.raises(grpc.aio.AioRpcError) as foreign:
                await poll(stub, "c-1", key="other-key")
            assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
        await until(lambda: app.metrics.async_count("delivered") == 1)
        await asyncio.sleep(0.5)  # a second delivery (the duplicate scored again) would come now
        assert len(upstreams.deliveries) == 1
        assert app.metrics.registry.get_sample_value("predmesh_gateway_async_pending") == 0
    finally:
        await app.stop()
    found = _keys(cluster)
    assert found and len({key_slot(k) for k in found}) == 1
