"""The prediction cache in the chart: `models.<m>.cache` rendered into the routing ConfigMap in
the gateway's format (accepted by its parser), the shared Redis level wired only when a model
has a policy, and bad policies refused by the schema."""

from __future__ import annotations

import yaml

from services.gateway.core.routing import parse_routing
from tests.helm.chart import HelmRun, Manifest, env_of, main_container, one


def routing_of(docs: list[Manifest]) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(one(docs, "ConfigMap", "routing")["data"]["routing.yaml"])


def render(helm_run: HelmRun, *extra: str) -> list[Manifest]:
    return helm_run.template(["cache.yaml"], list(extra))


def test_cache_is_off_by_default(helm_run: HelmRun) -> None:
    docs = helm_run.template()
    assert "cache" not in routing_of(docs)["models"]["fraud"]
    assert "PREDMESH_GATEWAY_CACHE_REDIS_URL" not in env_of(main_container(docs, "gateway"))


def test_cache_policy_is_rendered_for_the_gateway(helm_run: HelmRun) -> None:
    docs = render(helm_run)
    routing = routing_of(docs)
    assert routing["models"]["fraud"]["cache"] == {
        "ttl_s": 30,
        "rules": [{"when": {"amount": {"gt": 1000}}, "ttl_s": 2}, {"when": {"channel": "web"}, "ttl_s": 0}],
    }
    policy = parse_routing(routing).get("fraud").cache
    assert policy is not None
    assert (policy.ttl_for({"amount": 5000}), policy.ttl_for({"channel": "web"}), policy.ttl_for({})) == (2, 0, 30)
    env = env_of(main_container(docs, "gateway"))
    assert env["PREDMESH_GATEWAY_CACHE_REDIS_URL"] == "redis://redis-master:6379/0"


def test_shared_level_can_be_turned_off(helm_run: HelmRun) -> None:
    docs = render(helm_run, "--set", "gateway.cacheSharedRedis=false")
    assert "PREDMESH_GATEWAY_CACHE_REDIS_URL" not in env_of(main_container(docs, "gateway"))
    assert "cache" in routing_of(docs)["models"]["fraud"]


def test_shared_level_on_a_redis_cluster(helm_run: HelmRun) -> None:
    """The same cluster seed URL as the features and ingestion services (the gateway picks its
    cluster level by the scheme), or the URL Secret."""
    docs = render(helm_run, "--set", "redis.url=redis+cluster://seed:6379")
    env = env_of(main_container(docs, "gateway"))
    assert env["PREDMESH_GATEWAY_CACHE_REDIS_URL"] == "redis+cluster://seed:6379"
    assert env_of(main_container(docs, "features"))["PREDMESH_FEATURES_REDIS_URL"] == "redis+cluster://seed:6379"
    docs = render(helm_run, "--set", "redis.existingSecret=redis-auth")
    secret = env_of(main_container(docs, "gateway"))["PREDMESH_GATEWAY_CACHE_REDIS_URL"]
    assert secret["secretKeyRef"] == {"name": "redis-auth", "key": "redis-url"}


def test_bad_cache_policies_are_refused(helm_run: HelmRun) -> None:
    for bad in ("models.fraud.cache.ttlS=-1", "models.fraud.cache.ttl=5", "models.fraud.cache.rules[0].ttlS=x"):
        proc = helm_run.run(*helm_run.template_args(["cache.yaml"], extra=["--set", bad]))
        assert proc.returncode != 0, bad
