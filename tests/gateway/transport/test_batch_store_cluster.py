"""The batch job store on a real local Redis Cluster (3 masters, predmesh.local.rediscluster): a job's
keys share one slot (hash tag), its Lua scripts run there, jobs spread over the masters, and the
`active` hint set (another slot) is kept in step: a finished or vanished job leaves it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.cluster
from redis.crc import key_slot

from predmesh.local.rediscluster import RedisCluster
from services.gateway.core.batch_ports import JobSpec, JobState, Lease
from services.gateway.transport.batch_store import PREFIX, RedisJobStore


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(Path(tmp_path_factory.mktemp("batch-cluster")), masters=3, replicas=0) as running:
        yield running


def spec(job_id: str, chunks: int = 3) -> JobSpec:
    return JobSpec(job_id, "team", "fraud", "", "/in.parquet", "/out.parquet", 10, "entity_id", 10 * chunks, chunks, 1)


def keys_of(cluster: RedisCluster, job_id: str) -> list[str]:
    client = redis.cluster.RedisCluster.from_url(cluster.url.replace("redis+cluster://", "redis://"))
    try:
        return sorted(k.decode() for k in client.scan_iter(match=f"{PREFIX}{{{job_id}}}:*", target_nodes="all"))
    finally:
        client.close()


async def test_a_jobs_keys_share_one_slot_and_jobs_spread_over_masters(cluster: RedisCluster) -> None:
    store = RedisJobStore(cluster.url)
    ids = [f"job-{i}" for i in range(12)]
    try:
        for job_id in ids:
            created = await store.create(spec(job_id), ttl_s=600)
            assert created.state == JobState.QUEUED
        assert set(ids) <= set(await store.active())
        job = ids[0]
        leases = [await store.lease(job, "w1", 30.0, 1000) for _ in range(4)]
        assert leases == [Lease(job, 0), Lease(job, 1), Lease(job, 2), None]  # all leased: nothing left
        assert await store.renew(Lease(job, 1), "w1", 30.0) and not await store.renew(Lease(job, 1), "w2", 30.0)
        found = keys_of(cluster, job)
        assert len(found) == 1 + 3  # the job hash and three leases (no checkpoint yet), in one slot
        assert len({key_slot(k.encode()) for k in found}) == 1
        for chunk in range(3):
            assert await store.checkpoint(Lease(job, chunk), "w1", 10, chunk)
        assert not await store.checkpoint(Lease(job, 0), "w1", 10, 0)  # a chunk scored twice counts once
        assert await store.lease(job, "w1", 30.0, 1000) == Lease(job, -1)  # every chunk done: the final join
        assert await store.finish(job, JobState.DONE, "", 2000, 600)
        status = await store.get(job)
        assert status is not None and (status.state, status.rows_done, status.rows_failed) == (JobState.DONE, 30, 3)
        assert job not in await store.active()
        assert len({key_slot(k.encode()) for k in keys_of(cluster, job)}) == 1
        masters = {cluster.master_of(f"{PREFIX}{{{i}}}:j").name for i in ids}
        assert len(masters) >= 2  # 12 jobs are not all on one master
    finally:
        await store.close()


async def test_a_vanished_or_finished_job_leaves_the_active_set(cluster: RedisCluster) -> None:
    store = RedisJobStore(cluster.url)
    try:
        client = redis.cluster.RedisCluster.from_url(cluster.url.replace("redis+cluster://", "redis://"))
        client.sadd(f"{PREFIX}active", "ghost")  # e.g. expired, or its replica died between two steps
        client.close()
        assert "ghost" in await store.active()
        assert await store.lease("ghost", "w1", 30.0, 1000) is None
        assert "ghost" not in await store.active()
        await store.create(spec("cancelled-1"), ttl_s=600)
        assert await store.finish("cancelled-1", JobState.CANCELLED, "", 1000, 600)
        assert not await store.finish("cancelled-1", JobState.FAILED, "late", 1001, 600)  # finished already
        assert "cancelled-1" not in await store.active()
        again = await store.create(spec("cancelled-1"), ttl_s=600)  # a retried submit of a finished job
        assert again.state == JobState.CANCELLED and "cancelled-1" not in await store.active()
    finally:
        await store.close()
