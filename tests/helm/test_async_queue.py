"""The durable async queue in the chart: off by default; on, the gateway gets the Kafka bootstrap,
topics, TTL, horizon and the Redis URL (plain or from the existing Secret), all names that
GatewaySettings knows."""

from __future__ import annotations

from services.gateway.settings import GatewaySettings
from tests.helm.chart import BASE, HelmRun, env_of, main_container

PREFIX = "PREDMESH_GATEWAY_"


def test_off_by_default(helm_run: HelmRun) -> None:
    env = env_of(main_container(helm_run.template((BASE,)), "gateway"))
    assert not any(name.startswith(PREFIX + "ASYNC_") for name in env)


def test_enabled_renders_the_gateway_settings(helm_run: HelmRun) -> None:
    docs = helm_run.template((BASE,), ("--set", "asyncQueue.enabled=true", "--set", "asyncQueue.callbackHorizonS=60"))
    env = env_of(main_container(docs, "gateway"))
    assert env[PREFIX + "ASYNC_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env[PREFIX + "ASYNC_REQUESTS_TOPIC"] == "async-requests"
    assert env[PREFIX + "ASYNC_DEAD_LETTER_TOPIC"] == "async-dead-letters"
    assert env[PREFIX + "ASYNC_REDIS_URL"] == "redis://redis-master:6379/0"
    assert env[PREFIX + "CALLBACK_HORIZON_S"] == "60"
    for name in env:
        if name.startswith(PREFIX + "ASYNC_") or name.startswith(PREFIX + "CALLBACK_"):
            assert name.removeprefix(PREFIX).lower() in GatewaySettings.model_fields, name
    secret = helm_run.template(
        (BASE,), ("--set", "asyncQueue.enabled=true", "--set", "redis.existingSecret=redis-creds")
    )
    ref = env_of(main_container(secret, "gateway"))[PREFIX + "ASYNC_REDIS_URL"]
    assert ref == {"secretKeyRef": {"name": "redis-creds", "key": "redis-url"}}
