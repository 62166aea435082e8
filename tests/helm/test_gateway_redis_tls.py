"""Redis TLS files for the gateway in the chart: the `redis.tls` Secret is mounted into the gateway
pods, and PREDMESH_GATEWAY_REDIS_TLS_* set, whenever the gateway renders a Redis URL (the shared
prediction cache, asyncQueue, batchJobs); a gateway without any Redis URL gets neither (its
settings would refuse TLS files with no rediss:// URL to apply them to). The rendered env is
accepted by GatewaySettings itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gateway.settings import GatewaySettings
from tests.helm.chart import HelmRun, Manifest, env_of, main_container, pod_spec

PREFIX = "PREDMESH_GATEWAY_"
TLS = [
    "--set", "redis.url=rediss://redis:6380/0",
    "--set", "redis.tls.secretName=redis-ca",
    "--set", "redis.tls.clientCertificate=true",
]  # fmt: skip
USES = {
    "cache": (["cache.yaml"], [], "CACHE_REDIS_URL"),
    "asyncQueue": ([], ["--set", "asyncQueue.enabled=true"], "ASYNC_REDIS_URL"),
    "batchJobs": (
        [],
        ["--set", "batchJobs.enabled=true", "--set", "batchJobs.allowedRoots={s3://scoring/jobs/}"],
        "ASYNC_REDIS_URL",
    ),
}


def redis_tls_of(docs: list[Manifest]) -> tuple[dict[str, object], dict[str, str], dict[str, Manifest]]:
    """The gateway's REDIS_TLS_* env, its volume mounts (name -> path) and its volumes (name -> volume)."""
    env = {k: v for k, v in env_of(main_container(docs, "gateway")).items() if k.startswith(PREFIX + "REDIS_TLS_")}
    mounts = {m["name"]: m["mountPath"] for m in main_container(docs, "gateway").get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod_spec(docs, "gateway").get("volumes", [])}
    return env, mounts, volumes


@pytest.mark.parametrize("use", sorted(USES))
def test_gateway_with_a_redis_url_gets_the_redis_tls_files(
    helm_run: HelmRun, use: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, flags, url_name = USES[use]
    docs = helm_run.template(files, [*TLS, *flags])
    env, mounts, volumes = redis_tls_of(docs)
    assert env == {
        PREFIX + "REDIS_TLS_CA_PATH": "/etc/predmesh/redis-tls/ca.crt",
        PREFIX + "REDIS_TLS_CERT_PATH": "/etc/predmesh/redis-tls/tls.crt",
        PREFIX + "REDIS_TLS_KEY_PATH": "/etc/predmesh/redis-tls/tls.key",
    }
    assert mounts["redis-tls"] == "/etc/predmesh/redis-tls"
    assert volumes["redis-tls"]["secret"]["secretName"] == "redis-ca"
    rendered = env_of(main_container(docs, "gateway"))
    assert rendered[PREFIX + url_name] == "rediss://redis:6380/0"
    # The gateway's own settings accept what the chart renders (the files apply to a rediss:// URL).
    for name, value in rendered.items():
        if name.startswith(PREFIX) and isinstance(value, str):
            monkeypatch.setenv(name, value)
    settings = GatewaySettings()
    assert settings.redis_tls.ca == Path("/etc/predmesh/redis-tls/ca.crt")
    assert settings.redis_tls.cert == Path("/etc/predmesh/redis-tls/tls.crt")


def test_ca_only_without_client_certificate(helm_run: HelmRun) -> None:
    docs = helm_run.template(["cache.yaml"], TLS[:4])
    env, mounts, volumes = redis_tls_of(docs)
    assert env == {PREFIX + "REDIS_TLS_CA_PATH": "/etc/predmesh/redis-tls/ca.crt"}
    assert "redis-tls" in mounts and "redis-tls" in volumes


def test_gateway_without_a_redis_url_gets_no_redis_tls(helm_run: HelmRun) -> None:
    for files, flags in ([], []), (["cache.yaml"], ["--set", "gateway.cacheSharedRedis=false"]):
        docs = helm_run.template(files, [*TLS, *flags])
        assert not any(k.endswith("_REDIS_URL") for k in env_of(main_container(docs, "gateway")))
        env, mounts, volumes = redis_tls_of(docs)
        assert (env, "redis-tls" in mounts, "redis-tls" in volumes) == ({}, False, False)
        # The features pods keep theirs.
        assert "PREDMESH_FEATURES_REDIS_TLS_CA_PATH" in env_of(main_container(docs, "features"))
