"""Topic provisioning (predmesh.clients.kafkatopics, `predmesh topics ensure`): the plan, and the real broker."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from predmesh.cli import main as cli_main
from predmesh.clients.kafkatopics import Kind, TopicSpec, TopicState, parse_specs, plan
from predmesh.local.kafka import TansuBroker

SPEC = TopicSpec("predictions", 12, 3, {"retention.ms": "604800000"})


def test_missing_topic_is_created_with_its_partitions_and_configs() -> None:
    (action,) = plan({}, [SPEC])
    assert action.kind is Kind.CREATE and action.spec is SPEC


def test_fewer_partitions_grow_more_are_kept_and_replication_is_only_reported() -> None:
    fewer = plan({"predictions": TopicState(6, 3, {"retention.ms": "604800000"})}, [SPEC])
    assert [a.kind for a in fewer] == [Kind.ADD_PARTITIONS]
    assert fewer[0].detail == "6 -> 12 partitions"
    more = plan({"predictions": TopicState(24, 2, {"retention.ms": "604800000"})}, [SPEC])
    assert [a.kind for a in more] == [Kind.KEEP_MORE_PARTITIONS, Kind.REPLICATION_DIFFERS]


def test_only_differing_configs_are_set_and_a_matching_topic_is_ok() -> None:
    spec = TopicSpec("t", 3, 3, {"retention.ms": "1000", "min.insync.replicas": "2"})
    (action,) = plan({"t": TopicState(3, 3, {"retention.ms": "9", "min.insync.replicas": "2"})}, [spec])
    assert action.kind is Kind.SET_CONFIG and dict(action.config) == {"retention.ms": "1000"}
    (same,) = plan({"t": TopicState(3, 3, {"retention.ms": "1000", "min.insync.replicas": "2"})}, [spec])
    assert same.kind is Kind.OK


def test_spec_parsing_names_the_bad_entry() -> None:
    specs = parse_specs('[{"name": "a", "partitions": 2, "replicationFactor": 1, "config": {"retention.ms": 5}}]')
    assert specs == [TopicSpec("a", 2, 1, {"retention.ms": "5"})]
    with pytest.raises(ValueError, match=r"\[1\] 'b': needs a name, partitions >= 1"):
        parse_specs([{"name": "a", "partitions": 1, "replicationFactor": 1}, {"name": "b", "partitions": 0}])
    with pytest.raises(ValueError, match="declared twice"):
        parse_specs([{"name": "a", "partitions": 1, "replicationFactor": 1}] * 2)
    with pytest.raises(ValueError, match="JSON list"):
        parse_specs("{}")


def test_ensure_creates_then_is_idempotent_on_the_real_broker(
    tansu: TansuBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"events-{uuid.uuid4().hex[:8]}"
    spec = json.dumps([{"name": name, "partitions": 3, "replicationFactor": 1, "config": {"retention.ms": "3600000"}}])
    args = ["topics", "ensure", "--bootstrap-servers", tansu.bootstrap_servers, "--spec", spec, "--timeout-s", "10"]
    assert cli_main(args) == 0
    assert f"{name}: create (3 partitions, RF 1) ok" in capsys.readouterr().out
    admin = AdminClient({"bootstrap.servers": tansu.bootstrap_servers})
    assert len(admin.list_topics(timeout=10).topics[name].partitions) == 3
    (future,) = admin.describe_configs([ConfigResource("topic", name)], request_timeout=10).values()
    assert future.result(timeout=10)["retention.ms"].value == "3600000"
    assert cli_main(args) == 0  # a second run (helm upgrade) changes nothing
    assert f"{name}: ok (3 partitions, RF 1) ok" in capsys.readouterr().out


def test_a_bad_spec_exits_2_without_touching_the_broker(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["topics", "ensure", "--bootstrap-servers", "127.0.0.1:1", "--spec", '[{"name": "x"}]']
    assert cli_main(args) == 2
    assert "needs a name, partitions >= 1" in capsys.readouterr().out


def test_growing_partitions_fails_loudly_where_the_broker_cannot(
    tansu: TansuBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    """tansu has no CreatePartitions (Kafka >= 1.0 has): the run must exit 1 naming the topic, not pass."""
    name = f"grow-{uuid.uuid4().hex[:8]}"
    base = ["topics", "ensure", "--bootstrap-servers", tansu.bootstrap_servers, "--timeout-s", "10"]
    assert cli_main([*base, "--spec", json.dumps([{"name": name, "partitions": 1, "replicationFactor": 1}])]) == 0
    capsys.readouterr()
    assert cli_main([*base, "--spec", json.dumps([{"name": name, "partitions": 3, "replicationFactor": 1}])]) == 1
    assert f"{name}: add-partitions (1 -> 3 partitions) FAILED" in capsys.readouterr().out
