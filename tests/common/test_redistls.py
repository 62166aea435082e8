"""predmesh.common.redistls: rediss:// options and the settings mixin (features and ingest alike).

The TLS connection itself is shown against the real redis-server in tests/features/test_redis_tls.py.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from predmesh.common.redistls import RedisTls, ssl_options
from predmesh.demo import FEATURE_REGISTRY
from services.ingest.settings import IngestSettings


def test_plain_redis_gets_no_tls_options() -> None:
    assert ssl_options("redis://r:6379/0", RedisTls(ca=Path("ca.crt"))) == {}


def test_rediss_verifies_the_server_and_presents_the_client_certificate() -> None:
    options = ssl_options("rediss://r:6380/0", RedisTls(Path("ca.crt"), Path("c.crt"), Path("c.key")))
    assert options["ssl_cert_reqs"] == "required" and options["ssl_check_hostname"] is True
    assert options["ssl_min_version"] == ssl.TLSVersion.TLSv1_2
    assert (options["ssl_ca_certs"], options["ssl_certfile"], options["ssl_keyfile"]) == ("ca.crt", "c.crt", "c.key")


def test_ingest_settings_read_the_redis_tls_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDMESH_INGEST_REDIS_URL", "rediss://redis:6380/0")
    monkeypatch.setenv("PREDMESH_INGEST_REDIS_TLS_CA_PATH", "/etc/predmesh/redis-tls/ca.crt")
    monkeypatch.setenv("PREDMESH_INGEST_REGISTRY_PATH", str(FEATURE_REGISTRY))
    settings = IngestSettings()
    assert settings.redis_tls == RedisTls(ca=Path("/etc/predmesh/redis-tls/ca.crt"))
    with pytest.raises(ValueError, match="rediss://"):
        IngestSettings(redis_url="redis://redis:6379/0", redis_tls_ca_path=Path("ca.crt"))
