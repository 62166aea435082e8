"""The monitor app on a real tansu broker: shifted stream -> drift gauge 1, unshifted -> 0 (scraped over HTTP)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from google.protobuf.timestamp_pb2 import Timestamp

from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS, TansuBroker, create_topics
from predmesh.local.procs import free_port
from predmesh.v1 import common_pb2, events_pb2
from services.monitor.app import MonitorApp
from services.monitor.core.reference import compute_reference, save_reference
from services.monitor.settings import MonitorSettings
from tests.common.lifecycle_support import assert_failed_start_leaks_nothing
from tests.common.prometheus_scrape import scrape


def _event(rng: random.Random, version: str, shift: float) -> bytes:
    ts = Timestamp()
    ts.FromNanoseconds(time.time_ns())
    score = min(1.0, max(0.0, rng.betavariate(2, 5) + shift))
    return events_pb2.PredictionEvent(
        request_id=uuid.uuid4().hex,
        model="fraud",
        model_version=version,
        arm="stable",
        prediction=common_pb2.Prediction(score=score),
        latency_ms=3.0,
        degraded=False,
        timestamp=ts,
        features={"amount": common_pb2.Value(number_value=rng.gauss(100 + 200 * shift, 20))},
    ).SerializeToString()


def consumed(app: MonitorApp) -> float:
    return app.metrics.registry.get_sample_value("predmesh_monitor_events_consumed_total") or 0.0


async def test_drift_through_the_real_broker(tansu: TansuBroker, tmp_path: Path) -> None:
    rng = random.Random(11)
    reference = compute_reference(
        [min(1.0, max(0.0, rng.betavariate(2, 5))) for _ in range(5000)],
        {"amount": [rng.gauss(100, 20) for _ in range(5000)]},
    )
    for version in ("1", "2"):
        (tmp_path / "models" / "fraud" / version).mkdir(parents=True)
        save_reference(reference, tmp_path / "models" / "fraud" / version)
    topic = f"predictions-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(create_topics, tansu.bootstrap_servers, [topic])
    settings = MonitorSettings(
        port=0,
        grace_s=0.1,
        metrics_port=0,
        bootstrap_servers=tansu.bootstrap_servers,
        topic=topic,
        group_id=f"monitor-{uuid.uuid4().hex[:8]}",
        from_beginning=True,
        model_repository=tmp_path / "models",
        window_s=120,
        min_events=200,
        evaluate_interval_s=0.2,
        kafka_extra=DEV_CONSUMER_TIMEOUTS,  # the tooling's dev timeouts (production ones are the default)
    )
    app = MonitorApp(settings)
    await app.start()
    try:
        producer = Producer({"bootstrap.servers": tansu.bootstrap_servers, "linger.ms": 5})
        for _ in range(400):
            producer.produce(topic, _event(rng, "1", 0.0))  # unshifted
            producer.produce(topic, _event(rng, "2", 0.2))  # shifted scores and amount
        producer.produce(topic, b"\xff not an event")
        assert await asyncio.to_thread(producer.flush, 10) == 0
        deadline = time.monotonic() + 30
        while consumed(app) < 800 and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(0.1)
        await app.evaluate()
        got = await asyncio.to_thread(scrape, app.metrics_port)
    finally:
        await app.stop()

    def gauge(name: str, version: str, **extra: str) -> float:
        return got[(name, tuple(sorted({"model": "fraud", "version": version, **extra}.items())))]

    assert got[("predmesh_monitor_events_consumed_total", ())] == 800
    assert got[("predmesh_monitor_events_undecodable_total", ())] == 1
    assert gauge("predmesh_monitor_window_events", "1") == 400
    assert gauge("predmesh_monitor_score_psi", "1") < 0.1
    assert gauge("predmesh_monitor_feature_psi", "1", feature="amount") < 0.1
    assert gauge("predmesh_monitor_drift", "1") == 0
    assert gauge("predmesh_monitor_score_psi", "2") > 0.25
    assert gauge("predmesh_monitor_feature_psi", "2", feature="amount") > 0.25
    assert gauge("predmesh_monitor_drift", "2") == 1
    assert gauge("predmesh_monitor_latency_ms", "1", quantile="0.99") == 3.0
    assert gauge("predmesh_monitor_degraded_ratio", "2") == 0.0
    assert gauge("predmesh_monitor_request_rate", "1") > 0


async def test_failed_start_stops_the_consumer_and_the_evaluation_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = MonitorSettings(
        port=0, grace_s=0.1, bootstrap_servers=f"127.0.0.1:{free_port()}", model_repository=tmp_path
    )
    await assert_failed_start_leaks_nothing(MonitorApp(settings), monkeypatch)
