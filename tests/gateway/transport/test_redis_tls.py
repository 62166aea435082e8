"""The gateway's three Redis clients over TLS, against the real redis-server (TLS port only,
`tls-auth-clients yes`, certificates of a test CA): the prediction cache's shared level, the
durable async result store and the batch job store.

With the settings' CA and client certificate (`PREDMESH_GATEWAY_REDIS_TLS_*`) each one reads and
writes; without the CA (system CAs only: the test CA's server certificate is not trusted) the
cache answers a counted miss (the request still succeeds) and the stores fail `Unavailable`
(UNAVAILABLE through the gateway), never a hang or a plaintext connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from predmesh.common.errors import Unavailable
from predmesh.common.redistls import RedisTls
from predmesh.common.tls import TlsFiles
from predmesh.common.values import scalar_to_value
from predmesh.local.pki import LocalCA
from predmesh.local.procs import RedisServer
from predmesh.local.rediscluster import RedisCluster
from predmesh.v1 import batchjobs_pb2, batchjobs_pb2_grpc, prediction_pb2, prediction_pb2_grpc
from services.gateway.app import GatewayApp
from services.gateway.core.cache import CachedAnswer, CacheKey
from services.gateway.core.types import Score
from services.gateway.settings import GatewaySettings
from services.gateway.transport.async_store import RedisResultStore
from services.gateway.transport.batch_store import RedisJobStore
from services.gateway.transport.cache_store_cluster import ClusterSharedCache, open_shared_cache
from tests.features.test_redis_tls import client_tls, tls_redis  # noqa: F401 - the TLS-only redis-server fixture
from tests.gateway.transport.upstream_fakes import Upstreams

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]
AUTH = (("x-api-key", "k"),)
KEY = CacheKey("fraud|v1|u1", (("user", "u1"),))
ANSWER = CachedAnswer(Score(0.5, (0.5,), "ok"), (), (), ())


def without_ca(tls: RedisTls) -> RedisTls:
    """The client certificate but no CA: the server is checked against the system CAs only."""
    return RedisTls(None, tls.cert, tls.key)


def test_gateway_settings_read_the_redis_tls_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDMESH_GATEWAY_CACHE_REDIS_URL", "rediss+cluster://redis:6380")
    monkeypatch.setenv("PREDMESH_GATEWAY_ASYNC_REDIS_URL", "rediss://redis:6380/0")
    monkeypatch.setenv("PREDMESH_GATEWAY_REDIS_TLS_CA_PATH", "/etc/predmesh/redis-tls/ca.crt")
    monkeypatch.setenv("PREDMESH_GATEWAY_REDIS_TLS_CERT_PATH", "/etc/predmesh/redis-tls/tls.crt")
    monkeypatch.setenv("PREDMESH_GATEWAY_REDIS_TLS_KEY_PATH", "/etc/predmesh/redis-tls/tls.key")
    settings = GatewaySettings()
    assert settings.redis_tls == RedisTls(
        Path("/etc/predmesh/redis-tls/ca.crt"),
        Path("/etc/predmesh/redis-tls/tls.crt"),
        Path("/etc/predmesh/redis-tls/tls.key"),
    )
    # Any one plain redis:// URL next to the TLS files is refused, and so is no Redis URL at all.
    for name in ("cache_redis_url", "async_redis_url", "batch_redis_url"):
        with pytest.raises(ValueError, match=f"{name} is not rediss://"):
            GatewaySettings.model_validate({name: "redis://redis:6379/0"})
    monkeypatch.delenv("PREDMESH_GATEWAY_CACHE_REDIS_URL")
    monkeypatch.delenv("PREDMESH_GATEWAY_ASYNC_REDIS_URL")
    with pytest.raises(ValueError, match="no Redis URL"):
        GatewaySettings()
    with pytest.raises(ValueError, match="go together"):
        GatewaySettings(batch_redis_url="rediss://redis:6380/0", redis_tls_key_path=None)


async def test_cache_level_over_tls_and_a_counted_miss_without_the_ca(
    tls_redis: tuple[RedisServer, LocalCA],  # noqa: F811 - the imported fixture
) -> None:
    server, ca = tls_redis
    tls = client_tls(ca)
    failures: list[str] = []
    cache = open_shared_cache(server.url, 2.0, failures.append, tls=tls)
    subscribed = asyncio.Event()
    follower = asyncio.create_task(cache.run_invalidations(lambda t, i: None, lambda: None, subscribed))
    try:
        await cache.put_many([(KEY, ANSWER, (0,), 60.0)])
        [hit] = await cache.get_many([KEY])
        assert hit.answer == ANSWER and failures == []
        async with asyncio.timeout(10):  # the invalidation subscription's own connection is TLS too
            await subscribed.wait()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await cache.close()

    untrusting = open_shared_cache(server.url, 2.0, failures.append, tls=without_ca(tls))
    try:
        [miss] = await untrusting.get_many([KEY])
        await untrusting.put_many([(KEY, ANSWER, (0,), 60.0)])
    finally:
        await untrusting.close()
    assert miss.answer is None and failures == ["get", "put"]


async def test_result_store_over_tls_and_unavailable_without_the_ca(
    tls_redis: tuple[RedisServer, LocalCA],  # noqa: F811
) -> None:
    server, ca = tls_redis
    tls = client_tls(ca)
    store = RedisResultStore(server.url, timeout_s=2.0, tls=tls)
    try:
        assert await store.claim("tls-1", "token", 5.0)
        assert not await store.claim("tls-1", "other", 5.0)  # the first claim is stored on the server
        assert await store.lookup("tls-1") is None
    finally:
        await store.close()
    untrusting = RedisResultStore(server.url, timeout_s=2.0, tls=without_ca(tls))
    try:
        with pytest.raises(Unavailable, match="async result store unavailable"):
            await untrusting.lookup("tls-1")
    finally:
        await untrusting.close()


async def test_job_store_over_tls_and_unavailable_without_the_ca(
    tls_redis: tuple[RedisServer, LocalCA],  # noqa: F811
) -> None:
    server, ca = tls_redis
    tls = client_tls(ca)
    store = RedisJobStore(server.url, timeout_s=2.0, tls=tls)
    try:
        assert await store.get("no-such-job") is None
    finally:
        await store.close()
    untrusting = RedisJobStore(server.url, timeout_s=2.0, tls=without_ca(tls))
    try:
        with pytest.raises(Unavailable, match="unavailable"):
            await untrusting.get("no-such-job")
    finally:
        await untrusting.close()


@asynccontextmanager
async def gateway(upstreams: Upstreams, url: str, tls: RedisTls, root: Path) -> AsyncIterator[GatewayApp]:
    """The gateway app with its cache level and batch jobs on the TLS Redis, TLS files from settings."""
    routing = root / "routing.yaml"
    routing.write_text("models:\n  fraud:\n    cache: {ttl_s: 60}\n")
    settings = GatewaySettings(
        port=0,
        grace_s=0.2,
        features_target=upstreams.address,
        inference_target=upstreams.address,
        api_keys={"k": ["*"]},
        routing_path=str(routing),
        cache_redis_url=url,
        cache_timeout_ms=1000,
        async_redis_url=url,
        batch_allowed_roots=[str(root)],
        batch_worker=False,
        redis_tls_ca_path=tls.ca,
        redis_tls_cert_path=tls.cert,
        redis_tls_key_path=tls.key,
    )
    app = GatewayApp(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def ask(app: GatewayApp, root: Path, times: int = 1) -> tuple[list[bool], Any]:
    """`times` identical Predicts (their cached flags), then a batch job submission (its reply or RpcError)."""
    async with grpc.aio.insecure_channel(app.address) as channel:
        predict = prediction_pb2_grpc.PredictionServiceStub(channel)
        request = prediction_pb2.PredictRequest(
            request_id="r1", model="fraud", entity_id="u1", context={"amount": scalar_to_value(250.0)}
        )
        cached = [(await predict.Predict(request, metadata=AUTH, timeout=10)).cached for _ in range(times)]
        submit = batchjobs_pb2.SubmitBatchJobRequest(
            model="fraud", input=str(root / "in.parquet"), output=str(root / "out.parquet")
        )
        try:
            job: Any = await batchjobs_pb2_grpc.BatchJobServiceStub(channel).SubmitBatchJob(
                submit, metadata=AUTH, timeout=10
            )
        except grpc.aio.AioRpcError as err:
            job = err
    return cached, job


def cache_lookups(app: GatewayApp, result: str) -> float:
    labels = {"model": "", "result": result}
    return app.metrics.registry.get_sample_value("predmesh_gateway_cache_lookups_total", labels) or 0.0


async def test_gateway_app_uses_the_redis_tls_settings(
    tls_redis: tuple[RedisServer, LocalCA],  # noqa: F811
    tmp_path: Path,
) -> None:
    server, ca = tls_redis
    tls = client_tls(ca)
    pq.write_table(pa.table({"entity_id": ["u1", "u2"], "amount": [1.0, 2.0]}), tmp_path / "in.parquet")
    upstreams = Upstreams()
    await upstreams.start()
    try:
        async with gateway(upstreams, server.url, tls, tmp_path) as app:
            cached, job = await ask(app, tmp_path)
            assert cache_lookups(app, "error_get") == cache_lookups(app, "error_put") == 0
        assert cached == [False]  # scored, and stored in the shared level
        assert job.state == batchjobs_pb2.BATCH_JOB_STATE_QUEUED  # stored in the TLS Redis
        # A new replica (empty in-process level) is answered by the shared level over TLS.
        async with gateway(upstreams, server.url, tls, tmp_path) as app:
            cached, _ = await ask(app, tmp_path)
        assert cached == [True] and len(upstreams.infer_requests) == 1

        # Without the CA: the same entry is there, but unreadable; the request is still answered.
        async with gateway(upstreams, server.url, without_ca(tls), tmp_path) as app:
            cached, job = await ask(app, tmp_path)
            errors = cache_lookups(app, "error_get")
        assert cached == [False] and len(upstreams.infer_requests) == 2
        assert errors >= 1  # the failed lookup is counted
        assert isinstance(job, grpc.aio.AioRpcError) and job.code() == grpc.StatusCode.UNAVAILABLE
        assert server.host not in (job.details() or "")  # no internal address to the caller
    finally:
        await upstreams.stop()


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisCluster, LocalCA]]:
    """A 3-master Redis Cluster serving TLS only (clients, bus), client certificates required."""
    root = tmp_path_factory.mktemp("redis-cluster-tls")
    ca = LocalCA(root / "pki")
    paths = ca.issue("redis", ["127.0.0.1", "localhost"])
    with RedisCluster(root / "run", masters=3, replicas=0, tls=TlsFiles(paths.cert, paths.key, ca.cert_path)) as c:
        yield c, ca


async def test_cluster_cache_level_over_tls_and_a_counted_miss_without_the_ca(
    tls_cluster: tuple[RedisCluster, LocalCA],
) -> None:
    cluster, ca = tls_cluster
    assert cluster.url.startswith("rediss+cluster://")
    tls = client_tls(ca)
    failures: list[str] = []
    keys = [CacheKey(f"fraud|v1|u{i}", (("user", f"u{i}"),)) for i in range(12)]  # spread over the masters
    cache = open_shared_cache(cluster.url, 2.0, failures.append, tls=tls)
    assert isinstance(cache, ClusterSharedCache)
    subscribed = asyncio.Event()
    follower = asyncio.create_task(cache.run_invalidations(lambda t, i: None, lambda: None, subscribed))
    try:
        await cache.put_many([(key, ANSWER, (0,), 60.0) for key in keys])
        hits = await cache.get_many(keys)
        assert [hit.answer for hit in hits] == [ANSWER] * len(keys)
        assert (failures, cache.fallbacks) == ([], 0)  # the per-master clients speak TLS too (no fallback)
        async with asyncio.timeout(10):
            await subscribed.wait()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await cache.close()

    untrusting = open_shared_cache(cluster.url, 1.0, failures.append, tls=without_ca(tls))
    try:
        misses = await untrusting.get_many(keys)
    finally:
        await untrusting.close()
    assert [hit.answer for hit in misses] == [None] * len(keys) and failures == ["get"]


async def test_cluster_job_store_over_tls_and_unavailable_without_the_ca(
    tls_cluster: tuple[RedisCluster, LocalCA],
) -> None:
    cluster, ca = tls_cluster
    tls = client_tls(ca)
    store = RedisJobStore(cluster.url, timeout_s=2.0, tls=tls)
    try:
        assert await store.get("no-such-job") is None
    finally:
        await store.close()
    untrusting = RedisJobStore(cluster.url, timeout_s=1.0, tls=without_ca(tls))
    try:
        with pytest.raises(Unavailable, match="unavailable"):
            await untrusting.get("no-such-job")
    finally:
        await untrusting.close()
