"""ReadCoalescer: concurrent reads share one store read (unit tests with a fake store read)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.features.core.coalescer import Key, ReadCoalescer
from services.features.core.store import StoredEntity
from services.features.errors import StoreUnavailable

FIELDS = ("a",)


def keys(*ids: str) -> list[Key]:
    return [("user", entity_id, FIELDS) for entity_id in ids]


def entity(entity_id: str) -> StoredEntity:
    """What the fake store answers for `entity_id`: its id as the value of field a."""
    return StoredEntity(exists=True, fields={"a": entity_id.encode()})


def ids_of(entities: Sequence[StoredEntity]) -> list[str]:
    return [e.fields["a"].decode() for e in entities]  # type: ignore[union-attr]


class FakeRead:
    """Records each read; answers at once, or when `release()` is called while `hold` is set."""

    def __init__(self, hold: bool = False, error: Exception | None = None, short: bool = False) -> None:
        self.reads: list[list[str]] = []
        self.hold = hold
        self.error = error
        self.short = short
        self.started = asyncio.Event()
        self._gate = asyncio.Event()

    def release(self) -> None:
        self._gate.set()

    async def __call__(self, batch: Sequence[Key]) -> list[StoredEntity]:
        self.reads.append([entity_id for _, entity_id, _ in batch])
        self.started.set()
        if self.hold:
            await self._gate.wait()
            self._gate.clear()
        if self.error is not None:
            raise self.error
        answers = [entity(entity_id) for _, entity_id, _ in batch]
        return answers[:-1] if self.short else answers


async def settle() -> None:
    """Let every ready callback and task step run (a few loop iterations, no timers)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_callers_share_one_read_and_each_gets_its_own_entities_in_order() -> None:
    read = FakeRead()
    coalescer = ReadCoalescer(read)
    results = await asyncio.gather(
        coalescer.fetch_keys(keys("u1", "u2")),
        coalescer.fetch_keys(keys("u3")),
        coalescer.fetch_keys(keys("u5", "u4", "u1")),
    )
    assert read.reads == [["u1", "u2", "u3", "u5", "u4", "u1"]]
    assert [ids_of(r) for r in results] == [["u1", "u2"], ["u3"], ["u5", "u4", "u1"]]
    assert (coalescer.stats.reads, coalescer.stats.callers, coalescer.stats.keys) == (1, 3, 6)


async def test_a_lone_caller_is_read_on_the_next_loop_iteration_without_waiting_for_others() -> None:
    read = FakeRead()
    coalescer = ReadCoalescer(read)
    task = asyncio.create_task(coalescer.fetch_keys(keys("u1")))
    await settle()  # no timer involved: the read must have run within a few iterations
    assert task.done()
    assert ids_of(task.result()) == ["u1"]
    assert read.reads == [["u1"]]


async def test_callers_arriving_while_a_read_runs_wait_and_go_together_in_the_next_read() -> None:
    read = FakeRead(hold=True)
    coalescer = ReadCoalescer(read, max_inflight=1)
    first = asyncio.create_task(coalescer.fetch_keys(keys("u1")))
    await read.started.wait()
    later = [asyncio.create_task(coalescer.fetch_keys(keys(f"u{i}"))) for i in (2, 3, 4)]
    await settle()
    assert read.reads == [["u1"]]  # at most one read in flight: the others queue
    read.release()
    assert ids_of(await first) == ["u1"]
    await settle()
    assert read.reads == [["u1"], ["u2", "u3", "u4"]]
    read.release()
    assert [ids_of(await t) for t in later] == [["u2"], ["u3"], ["u4"]]


async def test_two_reads_may_run_at_once_with_max_inflight_two() -> None:
    read = FakeRead(hold=True)
    coalescer = ReadCoalescer(read, max_inflight=2)
    first = asyncio.create_task(coalescer.fetch_keys(keys("u1")))
    await read.started.wait()
    second = asyncio.create_task(coalescer.fetch_keys(keys("u2")))
    await settle()
    assert read.reads == [["u1"], ["u2"]]
    read.release()
    await settle()
    read.release()
    assert [ids_of(await first), ids_of(await second)] == [["u1"], ["u2"]]


async def test_a_read_holds_whole_callers_up_to_max_keys_and_a_larger_caller_goes_alone() -> None:
    read = FakeRead()
    coalescer = ReadCoalescer(read, max_keys=3)
    results = await asyncio.gather(
        coalescer.fetch_keys(keys("a1", "a2")),
        coalescer.fetch_keys(keys("b1", "b2")),  # would make 4 > 3: next read
        coalescer.fetch_keys(keys("c1")),
        coalescer.fetch_keys(keys("d1", "d2", "d3", "d4")),  # larger than max_keys: alone
    )
    assert read.reads == [["a1", "a2"], ["b1", "b2", "c1"], ["d1", "d2", "d3", "d4"]]
    assert [ids_of(r) for r in results] == [["a1", "a2"], ["b1", "b2"], ["c1"], ["d1", "d2", "d3", "d4"]]


async def test_a_failed_read_fails_every_caller_with_its_own_copy_of_the_error() -> None:
    read = FakeRead(error=StoreUnavailable("feature store unavailable: ConnectionError: refused"))
    coalescer = ReadCoalescer(read)
    results = await asyncio.gather(
        coalescer.fetch_keys(keys("u1")), coalescer.fetch_keys(keys("u2", "u3")), return_exceptions=True
    )
    assert len(read.reads) == 1
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert [str(r) for r in results] == ["feature store unavailable: ConnectionError: refused"] * 2
    assert results[0] is not results[1]


async def test_a_store_answering_the_wrong_number_of_entities_fails_every_caller() -> None:
    coalescer = ReadCoalescer(FakeRead(short=True))
    results = await asyncio.gather(
        coalescer.fetch_keys(keys("u1")), coalescer.fetch_keys(keys("u2")), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) and "1 entities for 2 keys" in str(r) for r in results)


async def test_a_caller_cancelled_during_the_read_does_not_disturb_the_others() -> None:
    read = FakeRead(hold=True)
    coalescer = ReadCoalescer(read)
    tasks = [asyncio.create_task(coalescer.fetch_keys(keys(f"u{i}"))) for i in (1, 2, 3)]
    await read.started.wait()
    tasks[1].cancel()  # e.g. its deadline passed
    await settle()
    read.release()
    assert ids_of(await tasks[0]) == ["u1"]
    assert ids_of(await tasks[2]) == ["u3"]
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert read.reads == [["u1", "u2", "u3"]]


async def test_a_caller_cancelled_while_queued_is_not_read() -> None:
    read = FakeRead(hold=True)
    coalescer = ReadCoalescer(read)
    first = asyncio.create_task(coalescer.fetch_keys(keys("u1")))
    await read.started.wait()
    queued = [asyncio.create_task(coalescer.fetch_keys(keys(f"u{i}"))) for i in (2, 3)]
    await settle()
    queued[0].cancel()
    await settle()
    read.release()
    await first
    await settle()
    read.release()
    assert ids_of(await queued[1]) == ["u3"]
    assert read.reads == [["u1"], ["u3"]]


async def test_aclose_reads_what_is_queued_then_refuses_new_callers() -> None:
    read = FakeRead(hold=True)
    coalescer = ReadCoalescer(read)
    first = asyncio.create_task(coalescer.fetch_keys(keys("u1")))
    await read.started.wait()
    queued = asyncio.create_task(coalescer.fetch_keys(keys("u2")))
    await settle()
    closing = asyncio.create_task(coalescer.aclose())
    await settle()
    with pytest.raises(StoreUnavailable, match="shutting down"):
        await coalescer.fetch_keys(keys("u9"))
    read.release()
    await settle()
    read.release()
    await closing
    assert [ids_of(await first), ids_of(await queued)] == [["u1"], ["u2"]]
    assert read.reads == [["u1"], ["u2"]]


async def test_no_keys_need_no_read() -> None:
    read = FakeRead()
    assert await ReadCoalescer(read).fetch_keys([]) == []
    assert read.reads == []


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReadCoalescer(FakeRead(), max_inflight=0)


async def test_traced_each_caller_gets_its_own_pipeline_span_under_its_own_parent() -> None:
    from opentelemetry import trace

    from tests.common.tracing_support import memory_exporter

    exporter = memory_exporter()
    tracer = trace.get_tracer("test")
    coalescer = ReadCoalescer(FakeRead(), traced=True)

    async def call(name: str, entity_id: str) -> list[StoredEntity]:
        with tracer.start_as_current_span(name):
            return await coalescer.fetch_keys(keys(entity_id))

    results = await asyncio.gather(call("rpc-1", "u1"), call("rpc-2", "u2"))
    assert [ids_of(r) for r in results] == [["u1"], ["u2"]]
    parents = {s.context.span_id: s.name for s in exporter.get_finished_spans() if s.name.startswith("rpc-")}
    pipelines = [s for s in exporter.get_finished_spans() if s.name == "redis.pipeline"]
    assert len(pipelines) == 2
    assert sorted(parents[s.parent.span_id] for s in pipelines if s.parent is not None) == ["rpc-1", "rpc-2"]
    assert [dict(s.attributes or {}).get("predmesh.batch_entities") for s in pipelines] == [2, 2]
