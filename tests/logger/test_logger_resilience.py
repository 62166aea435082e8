"""Nothing acknowledged is lost: broker outage (spill + replay) and a SIGKILLed logger process."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from logger_support import RunLogger, Topics, consume, ensure_topics, make_event, request_ids, wait_for

from predmesh.clients.logger import LoggerClient
from predmesh.local.kafka import TansuBroker
from predmesh.local.procs import PythonService, free_port

P = "predmesh_logger_"
REPO = Path(__file__).resolve().parents[2]


async def _emit_all(client: LoggerClient, prefix: str, n: int) -> set[str]:
    for i in range(n):
        assert client.emit(make_event(i, prefix=prefix, arm="shadow" if i % 7 == 0 else "canary"))
    return {f"{prefix}-{i}" for i in range(n)}


async def _wait_acked(client: LoggerClient, timeout_s: float = 20) -> None:
    await wait_for(lambda: client.stats.pending == 0, timeout_s, "logger acks")


async def test_broker_outage_spills_to_journal_and_replays(
    own_tansu: TansuBroker, topics: Topics, run_logger: RunLogger
) -> None:
    """Events acked while the broker is down are journaled and produced after it returns.

    tansu keeps topics in memory, so a restarted broker has lost everything produced
    before the outage: the assertion covers what can be checked honestly — every event
    accepted during the outage and after it arrives in the restarted broker.
    """
    broker = own_tansu
    broker.start()
    ensure_topics(broker.bootstrap_servers, topics)
    async with run_logger(broker.bootstrap_servers, topics) as app:
        m = app.metrics
        client = LoggerClient(app.address)
        await client.start()
        try:
            before = await _emit_all(client, "before", 300)
            await _wait_acked(client)
            await wait_for(lambda: m.value(P + "events_produced_total") >= 300, 20, "pre-outage deliveries")

            await asyncio.to_thread(broker.stop)
            await wait_for(lambda: m.value(P + "kafka_up") == 0, 15, "outage detection")
            during = await _emit_all(client, "during", 500)
            await _wait_acked(client)  # acked = journaled, although Kafka is down
            assert m.value(P + "events_spilled_total") >= 500
            await wait_for(lambda: m.value(P + "journal_backlog_events") >= 500, 5, "backlog gauge")

            await asyncio.to_thread(broker.start)
            ensure_topics(broker.bootstrap_servers, topics)
            after = await _emit_all(client, "after", 200)
            await _wait_acked(client)
            await wait_for(lambda: m.value(P + "journal_backlog_events") == 0, 30, "journal replay")
        finally:
            await client.stop(timeout_s=5)
        assert m.value(P + "events_replayed_total") >= 500
        assert m.value(P + "producer_restarts_total") >= 1
        assert m.value(P + "events_dropped_total", reason="dead_letter") == 0
        assert client.stats.dropped == 0 and client.stats.rejected == 0

    expected = during | after
    messages = await asyncio.to_thread(consume, broker.bootstrap_servers, topics.both, len(expected))
    ids = request_ids(messages)
    missing = expected - set(ids)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert set(ids) <= expected | before  # nothing foreign; duplicates allowed (at-least-once)


def _logger_process(workdir: Path, journal: Path, bootstrap: str, topics: Topics) -> PythonService:
    port = free_port()
    env = {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PREDMESH_LOGGER_PORT": str(port),
        "PREDMESH_LOGGER_BOOTSTRAP_SERVERS": bootstrap,
        "PREDMESH_LOGGER_TOPIC": topics.predictions,
        "PREDMESH_LOGGER_SHADOW_TOPIC": topics.shadow,
        "PREDMESH_LOGGER_JOURNAL_DIR": str(journal),
        "PREDMESH_LOGGER_DELIVERY_TIMEOUT_MS": "3000",
        "PREDMESH_LOGGER_RETRY_BACKOFF_MAX_S": "0.5",
    }
    service = PythonService("logger", "services.logger.app", port, env, workdir=workdir)
    assert Path(sys.executable).exists()
    return service


async def test_sigkilled_logger_replays_its_journal(tmp_path: Path, own_tansu: TansuBroker, topics: Topics) -> None:
    """Every event acked before a SIGKILL reaches Kafka after the logger restarts."""
    broker = own_tansu  # not started yet: the first logger cannot deliver anything
    journal = tmp_path / "journal"
    expected: set[str] = set()

    first = _logger_process(tmp_path / "p1", journal, broker.bootstrap_servers, topics)
    await asyncio.to_thread(first.start)
    try:
        client = LoggerClient(first.address)
        await client.start()
        expected |= await _emit_all(client, "unsent", 1000)
        assert await client.stop(timeout_s=20)  # all acked: journaled, none delivered
    finally:
        await asyncio.to_thread(first.kill)

    await asyncio.to_thread(broker.start)
    ensure_topics(broker.bootstrap_servers, topics)
    second = _logger_process(tmp_path / "p2", journal, broker.bootstrap_servers, topics)
    await asyncio.to_thread(second.start)
    try:
        client = LoggerClient(second.address)
        await client.start()
        expected |= await _emit_all(client, "live", 1000)
        assert await client.stop(timeout_s=20)
    finally:
        await asyncio.to_thread(second.kill)  # right after the acks: some may not be produced yet

    third = _logger_process(tmp_path / "p3", journal, broker.bootstrap_servers, topics)
    await asyncio.to_thread(third.start)
    try:
        messages = await asyncio.to_thread(consume, broker.bootstrap_servers, topics.both, len(expected))
    finally:
        await asyncio.to_thread(third.stop)
    ids = request_ids(messages)
    missing = expected - set(ids)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert set(ids) == expected
    print(f"sigkill test: {len(expected)} acked, {len(ids)} produced ({len(ids) - len(expected)} duplicates)")
