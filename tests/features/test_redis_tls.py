"""Redis over TLS with the real redis-server (Debian's build has TLS): rediss://, CA, client certificate.

The server listens on a TLS port only and requires client certificates of the test CA
(`tls-auth-clients yes`). The features store reads through it with the settings' files; without
a client certificate, or trusting another CA, it gets no answer (UNAVAILABLE upstream).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from predmesh.common.redistls import RedisTls
from predmesh.common.tls import TlsFiles
from predmesh.demo import FEATURE_REGISTRY
from predmesh.featurestore.layout import entity_key
from predmesh.local.pki import LocalCA
from predmesh.local.procs import RedisServer
from services.features.app import FeaturesApp
from services.features.core.store import RedisFeatureStore
from services.features.errors import StoreUnavailable
from services.features.settings import FeaturesSettings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, LocalCA]]:
    root = tmp_path_factory.mktemp("redis-tls")
    ca = LocalCA(root / "pki")
    paths = ca.issue("redis", ["127.0.0.1", "localhost"])
    server = RedisServer(workdir=root / "run", tls=TlsFiles(paths.cert, paths.key, ca.cert_path))
    server.start()
    try:
        yield server, ca
    finally:
        server.stop()


def client_tls(ca: LocalCA) -> RedisTls:
    paths = ca.issue("features", ["features"])
    return RedisTls(ca.cert_path, paths.cert, paths.key)


async def test_store_reads_over_tls_with_a_client_certificate(tls_redis: tuple[RedisServer, LocalCA]) -> None:
    server, ca = tls_redis
    assert server.url.startswith("rediss://")
    tls = client_tls(ca)
    writer = aioredis.Redis.from_url(
        server.url, ssl_ca_certs=str(tls.ca), ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key)
    )
    await writer.hset(entity_key("user", "u-tls"), mapping={"age": "42"})
    await writer.aclose()
    store = RedisFeatureStore.from_url(server.url, timeout_s=2.0, tls=tls)
    try:
        await store.ping()
        [entity] = await store.fetch("user", ["u-tls"], ["age"])
        assert entity.exists and entity.fields["age"] == b"42"
    finally:
        await store.close()


@pytest.mark.parametrize("case", ["no client certificate", "another CA"])
async def test_store_without_the_right_credentials_gets_nothing(
    tls_redis: tuple[RedisServer, LocalCA], tmp_path: Path, case: str
) -> None:
    server, ca = tls_redis
    if case == "no client certificate":
        tls = RedisTls(ca.cert_path)
    else:
        tls = client_tls(LocalCA(tmp_path / "other"))
    store = RedisFeatureStore.from_url(server.url, timeout_s=1.0, retries=0, tls=tls)
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        await store.close()


async def test_features_app_uses_the_redis_tls_settings(
    tls_redis: tuple[RedisServer, LocalCA], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server, ca = tls_redis
    tls = client_tls(ca)
    monkeypatch.setenv("PREDMESH_FEATURES_REDIS_URL", server.url)
    monkeypatch.setenv("PREDMESH_FEATURES_REDIS_TLS_CA_PATH", str(tls.ca))
    monkeypatch.setenv("PREDMESH_FEATURES_REDIS_TLS_CERT_PATH", str(tls.cert))
    monkeypatch.setenv("PREDMESH_FEATURES_REDIS_TLS_KEY_PATH", str(tls.key))
    monkeypatch.setenv("PREDMESH_FEATURES_REGISTRY_PATH", str(FEATURE_REGISTRY))
    settings = FeaturesSettings(port=0, grace_s=0.1, redis_timeout_ms=2000)
    assert settings.redis_tls_cert_path == tls.cert
    app = FeaturesApp(settings)
    with caplog.at_level(logging.WARNING, logger="services.features.app"):
        await app.start()
        await app.stop()
    assert not [r for r in caplog.records if "Redis not reachable" in r.getMessage()]
    # The same app without the client certificate cannot reach Redis (so the files above were used).
    caplog.clear()
    without = FeaturesApp(settings.model_copy(update={"redis_tls_cert_path": None, "redis_tls_key_path": None}))
    with caplog.at_level(logging.WARNING, logger="services.features.app"):
        await without.start()
        await without.stop()
    assert [r for r in caplog.records if "Redis not reachable" in r.getMessage()]


def test_redis_tls_settings_need_a_rediss_url() -> None:
    with pytest.raises(ValueError, match="rediss://"):
        FeaturesSettings(
            registry_path=FEATURE_REGISTRY, redis_url="redis://127.0.0.1:6379/0", redis_tls_ca_path=Path("ca.crt")
        )
    with pytest.raises(ValueError, match="go together"):
        FeaturesSettings(
            registry_path=FEATURE_REGISTRY, redis_url="rediss://r:6380/0", redis_tls_cert_path=Path("c.crt")
        )
