"""Scale-out values: the features service pointed at an external Redis Cluster."""

from __future__ import annotations

from collections.abc import Callable

from tests.helm.chart import BASE, HelmRun, Manifest, env_of, find, main_container, pod_spec, workload

Render = Callable[[str], list[Manifest]]


def test_redis_cluster_url_reaches_the_features_service(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=["--set", "redis.url=redis+cluster://redis-cluster:6379"])
    env = env_of(main_container(docs, "features"))
    assert env["PREDMESH_FEATURES_REDIS_URL"] == "redis+cluster://redis-cluster:6379"


def test_unknown_redis_scheme_is_rejected(helm_run: HelmRun) -> None:
    proc = helm_run.run(*helm_run.template_args(extra=["--set", "redis.url=memcached://x:1"]))
    assert proc.returncode != 0
    assert "redis" in proc.stderr and "url" in proc.stderr


def test_warm_gpu_nodes_are_placeholders_real_triton_pods_preempt(render: Render) -> None:
    docs = render("gpu-keda")
    (priority,) = find(docs, "PriorityClass")
    assert priority["value"] < 0 and priority["globalDefault"] is False
    assert priority["preemptionPolicy"] == "Never"  # placeholders never evict anything themselves
    holder = pod_spec(docs, "triton-placeholder")
    triton = pod_spec(docs, "triton")
    assert workload(docs, "triton-placeholder")["spec"]["replicas"] == 2
    assert holder["priorityClassName"] == priority["metadata"]["name"]
    assert "priorityClassName" not in triton  # priority 0: above the placeholders
    # Same shape and placement as a Triton pod, so a preempted placeholder's node fits one.
    assert holder["containers"][0]["resources"] == triton["containers"][0]["resources"]
    assert holder["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == 2
    for key in ("nodeSelector", "tolerations", "runtimeClassName"):
        assert holder[key] == triton[key], key
    assert holder["containers"][0]["image"].startswith("registry.k8s.io/pause")


def test_no_placeholders_by_default(render: Render) -> None:
    assert not find(render("default"), "PriorityClass")
    docs = render("gpu-hpa")
    assert not find(docs, "PriorityClass") and not find(docs, "Deployment", "triton-placeholder")


def test_ingest_consumer_group_scales_on_kafka_lag(helm_run: HelmRun) -> None:
    values = ["ingest.yaml"]
    extra = ["--set", "ingest.autoscaling.enabled=true", "--set", "ingest.autoscaling.maxReplicas=4"]
    docs = helm_run.template(files=[BASE, *values], extra=extra)
    (scaled,) = find(docs, "ScaledObject", "ingest")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == workload(docs, "ingest")["metadata"]["name"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == "predmesh-ingest-eu" and meta["topic"] == "feature-events"
    assert meta["lagThreshold"] == "1000" and meta["allowIdleConsumers"] == "false"
    assert "replicas" not in workload(docs, "ingest")["spec"], "KEDA owns the replica count"
    assert not find(docs, "HorizontalPodAutoscaler", "ingest")
    assert not find(helm_run.template(files=[BASE, *values]), "ScaledObject", "ingest")


def test_ingest_more_replicas_than_partitions_fails(helm_run: HelmRun) -> None:
    extra = ["--set", "ingest.autoscaling.enabled=true", "--set", "ingest.autoscaling.maxReplicas=12"]
    proc = helm_run.run(*helm_run.template_args(files=[BASE, "ingest.yaml"], extra=extra))
    assert proc.returncode != 0
    assert "ingest: up to 12 replicas but its topics have at most 6 partitions (kafka.topics: featureEvents=6)" in (
        proc.stderr
    )
    raised = [*extra, "--set", "kafka.topics.featureEvents.partitions=12"]
    assert find(helm_run.template(files=[BASE, "ingest.yaml"], extra=raised), "ScaledObject", "ingest")
