"""Kafka topics in the chart: partitions/replication/retention per topic (kafka.topics), the
provisioning hook Job (kafka.provisioning), consumers bounded by partitions, lag scaling of the sink."""

from __future__ import annotations

import json

from tests.helm.chart import BASE, HelmRun, Manifest, env_of, find, main_container, workload

SINK = [
    "--set",
    "sink.enabled=true",
    "--set",
    "sink.clickhouse.url=http://clickhouse:8123",
    "--set",
    "sink.clickhouse.passwordSecret.name=ch",
]
PROVISION = ["--set", "kafka.provisioning.enabled=true"]


def _job(docs: list[Manifest]) -> Manifest:
    (job,) = find(docs, "Job", "kafka-topics")
    return job


def _spec(job: Manifest) -> dict[str, dict[str, object]]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {t["name"]: t for t in json.loads(env_of(container)["PREDMESH_TOPICS_SPEC"])}


def test_no_provisioning_job_by_default(helm_run: HelmRun) -> None:
    assert not find(helm_run.template(), "Job")


def test_the_hook_job_provisions_every_topic_in_use_before_install_and_upgrade(helm_run: HelmRun) -> None:
    docs = helm_run.template(files=[BASE, "ingest.yaml"], extra=[*PROVISION, *SINK])
    job = _job(docs)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["command"][:5] == ["python", "-m", "predmesh.cli", "topics", "ensure"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert env_of(container)["PREDMESH_TOPICS_BOOTSTRAP_SERVERS"] == "kafka:9092"
    spec = _spec(job)
    # Logger/sink topics, and ingest's two; no async topics (asyncQueue is off).
    assert set(spec) == {"predictions", "shadow-predictions", "outcomes", "feature-events", "feature-events-dlq"}
    assert spec["predictions"] == {
        "role": "predictions",
        "name": "predictions",
        "partitions": 12,
        "replicationFactor": 3,
        "config": {"retention.ms": "604800000", "min.insync.replicas": "2"},
    }
    assert spec["feature-events-dlq"]["partitions"] == 1


def test_topic_values_and_names_follow_the_components(helm_run: HelmRun) -> None:
    extra = [
        *PROVISION,
        "--set",
        "kafka.topic=preds-eu",
        "--set",
        "kafka.topics.predictions.partitions=48",
        "--set",
        "kafka.topics.predictions.retentionMs=3600000",
        "--set",
        "kafka.topics.predictions.config.cleanup\\.policy=delete",
        "--set",
        "asyncQueue.enabled=true",
    ]
    spec = _spec(_job(helm_run.template(extra=extra)))
    assert spec["preds-eu"]["partitions"] == 48
    assert spec["preds-eu"]["config"] == {
        "retention.ms": "3600000",
        "min.insync.replicas": "2",
        "cleanup.policy": "delete",
    }
    assert {"async-requests", "async-results", "async-dead-letters"} <= set(spec)
    assert "feature-events" not in spec  # ingest is off


def test_the_hook_gets_kafka_credentials_and_its_own_network_policy(helm_run: HelmRun) -> None:
    extra = [
        *PROVISION,
        "--set",
        "kafka.clientConfigSecret.name=kafka-client",
        "--set",
        "kafka.caSecret=kafka-ca",
        "--set",
        "networkPolicy.enabled=true",
    ]
    docs = helm_run.template(extra=extra)
    pod = _job(docs)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    extra_env = env_of(container)["PREDMESH_TOPICS_KAFKA_EXTRA"]
    assert extra_env == {"secretKeyRef": {"name": "kafka-client", "key": "kafka-extra"}}
    assert pod["volumes"][0]["secret"]["secretName"] == "kafka-ca"
    (policy,) = find(docs, "NetworkPolicy", "kafka-topics")
    assert policy["metadata"]["annotations"]["helm.sh/hook-weight"] == "-5"  # before the Job (weight 0)
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "kafka-topics"
    assert [p["port"] for p in policy["spec"]["egress"][0]["ports"]] == [9092]


def test_a_topic_in_use_without_partitions_fails(helm_run: HelmRun) -> None:
    extra = [*PROVISION, "--set", "kafka.topics.outcomes=null"]
    proc = helm_run.run(*helm_run.template_args(extra=extra))
    assert proc.returncode != 0
    assert "kafka.topics.outcomes.partitions must be set" in proc.stderr


def test_sink_replicas_are_bounded_by_its_topics_partitions(helm_run: HelmRun) -> None:
    too_many = [*SINK, "--set", "sink.replicaCount=13"]
    proc = helm_run.run(*helm_run.template_args(extra=too_many))
    assert proc.returncode != 0
    assert "sink: up to 13 replicas but its topics have at most 12 partitions" in proc.stderr
    assert workload(helm_run.template(extra=[*SINK, "--set", "sink.replicaCount=12"]), "sink")


def test_monitor_replicas_are_bounded_by_the_prediction_log_partitions(helm_run: HelmRun) -> None:
    extra = ["--set", "monitor.replicaCount=3", "--set", "kafka.topics.predictions.partitions=2"]
    proc = helm_run.run(*helm_run.template_args(extra=extra))
    assert proc.returncode != 0 and "monitor: up to 3 replicas" in proc.stderr


def test_sink_consumer_group_scales_on_its_lag(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=[*SINK, "--set", "sink.autoscaling.enabled=true"])
    (scaled,) = find(docs, "ScaledObject", "sink")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka" and trigger["metadata"]["consumerGroup"] == "predmesh-sink"
    assert "topic" not in trigger["metadata"]  # the lag over every topic of the group
    assert scaled["spec"]["maxReplicaCount"] == 6
    assert "replicas" not in workload(docs, "sink")["spec"], "KEDA owns the replica count"


def test_every_kafka_client_gets_the_client_config_and_ca(helm_run: HelmRun) -> None:
    extra = [
        *SINK,
        "--set",
        "kafka.clientConfigSecret.name=kafka-client",
        "--set",
        "kafka.caSecret=kafka-ca",
        "--set",
        "asyncQueue.enabled=true",
    ]
    docs = helm_run.template(files=[BASE, "ingest.yaml"], extra=extra)
    secret = {"secretKeyRef": {"name": "kafka-client", "key": "kafka-extra"}}
    expected = {
        "logger": ["PREDMESH_LOGGER_KAFKA_EXTRA"],
        "monitor": ["PREDMESH_MONITOR_KAFKA_EXTRA"],
        "sink": ["PREDMESH_SINK_KAFKA_EXTRA"],
        "ingest": ["PREDMESH_INGEST_KAFKA_EXTRA", "PREDMESH_INGEST_PRODUCER_EXTRA"],
        "gateway": ["PREDMESH_GATEWAY_ASYNC_KAFKA_EXTRA"],
    }
    for component, names in expected.items():
        container = main_container(docs, component)
        env = env_of(container)
        assert all(env[name] == secret for name in names), component
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        assert mounts.get("kafka-tls") == "/etc/predmesh/kafka-tls", component
    assert "PREDMESH_FEATURES_KAFKA_EXTRA" not in env_of(main_container(docs, "features"))
    plain = helm_run.template(extra=["--set", "kafka.clientConfigSecret.name=kafka-client"])
    assert "PREDMESH_GATEWAY_ASYNC_KAFKA_EXTRA" not in env_of(main_container(plain, "gateway"))
