"""Consumer configuration: production timeouts by default, overrides applied on top."""

from __future__ import annotations

from predmesh.common.kafka import PRODUCTION_CONSUMER_CONFIG, consumer_config
from predmesh.local.kafka import DEV_CONSUMER_TIMEOUTS
from services.monitor.app import monitor_consumer_config
from services.monitor.settings import MonitorSettings


def test_services_consume_with_production_timeouts_by_default() -> None:
    config = monitor_consumer_config(MonitorSettings(bootstrap_servers="kafka:9092", group_id="g"))
    assert config["session.timeout.ms"] == PRODUCTION_CONSUMER_CONFIG["session.timeout.ms"] == 45000
    assert config["fetch.wait.max.ms"] == 500
    assert config["enable.auto.commit"] is False
    assert config["bootstrap.servers"] == "kafka:9092"
    assert (config["group.id"], config["auto.offset.reset"]) == ("g", "latest")


def test_kafka_extra_overrides_the_production_timeouts() -> None:
    settings = MonitorSettings(kafka_extra=DEV_CONSUMER_TIMEOUTS, from_beginning=True)
    config = monitor_consumer_config(settings)
    assert config["session.timeout.ms"] == "6000"
    assert config["fetch.wait.max.ms"] == "10"
    assert config["auto.offset.reset"] == "earliest"


def test_overrides_win_over_every_default() -> None:
    config = consumer_config("b:1", "g", from_beginning=False, overrides={"group.id": "other", "x": "1"})
    assert config["group.id"] == "other"
    assert config["x"] == "1"
