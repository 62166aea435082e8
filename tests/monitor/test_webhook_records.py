"""Webhook-call records kept through a broker outage (real tansu): a record that Kafka does not
acknowledge stays in the recorder's backlog, and once the broker is back the next record and the
periodic retry deliver everything, oldest first; a full backlog drops its oldest record, counted."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from predmesh.common.kafka import durable_producer_config
from predmesh.local.kafka import TansuBroker, create_topics
from predmesh.v1.retrain_pb2 import RetrainWebhookRecord
from services.monitor.core.retrain import DriftEvent, WebhookOutcome
from services.monitor.transport.webhook_log import RecordNotDelivered, WebhookRecorder
from tests.gateway.asyncq.support import read_topic


def _event(delivery_id: str) -> DriftEvent:
    return DriftEvent(
        delivery_id=delivery_id,
        model="fraud",
        version="1",
        detected_s=time.time(),
        feature_psi={"amount": 0.4},
        psi_alert=0.2,
        score_psi=None,
    )


def _outcome() -> WebhookOutcome:
    return WebhookOutcome("delivered", 1, 200, "", time.time())


def _recorder(broker: TansuBroker, topic: str, **kw: float) -> WebhookRecorder:
    config = durable_producer_config(broker.bootstrap_servers, "test-monitor", delivery_timeout_ms=2000)
    return WebhookRecorder(config, topic, timeout_s=3.0, **kw)  # type: ignore[arg-type]


async def test_records_made_while_the_broker_is_down_are_delivered_after_it_returns(tmp_path: Path) -> None:
    broker = TansuBroker(workdir=tmp_path / "tansu")
    broker.start()
    topic = f"retrain-webhooks-{uuid.uuid4().hex[:6]}"
    try:
        await asyncio.to_thread(create_topics, broker.bootstrap_servers, [topic])
        recorder = _recorder(broker, topic, retry_s=0.5)
        await asyncio.to_thread(broker.stop)
        with pytest.raises(RecordNotDelivered):
            await recorder.record(_event("d-1"), _outcome())
        with pytest.raises(RecordNotDelivered):
            await recorder.record(_event("d-2"), _outcome())
        assert [key for key, _ in recorder.backlog] == [b"d-1", b"d-2"]
        await asyncio.to_thread(broker.start)  # memory storage: the topic is created again
        await asyncio.to_thread(create_topics, broker.bootstrap_servers, [topic])
        retries = asyncio.create_task(recorder.run_retries())
        try:
            deadline = time.monotonic() + 30
            while recorder.backlog:
                assert time.monotonic() < deadline, "the backlog was never sent"
                await asyncio.sleep(0.1)
        finally:
            retries.cancel()
        await recorder.record(_event("d-3"), _outcome())
        records = await asyncio.to_thread(read_topic, broker.bootstrap_servers, topic, 3)
        assert [key for key, _, _ in records] == [b"d-1", b"d-2", b"d-3"]
        assert RetrainWebhookRecord.FromString(records[0][1]).model == "fraud"
        assert recorder.dropped == 0
    finally:
        broker.stop()


async def test_a_full_backlog_drops_its_oldest_record_and_counts_it(tmp_path: Path) -> None:
    broker = TansuBroker(workdir=tmp_path / "tansu")
    broker.start()
    recorder = _recorder(broker, "retrain-webhooks", max_backlog=2)
    broker.stop()  # never reachable: every record stays pending
    for n in range(3):
        with pytest.raises(RecordNotDelivered):
            await recorder.record(_event(f"d-{n}"), _outcome())
    assert [key for key, _ in recorder.backlog] == [b"d-1", b"d-2"] and recorder.dropped == 1
