"""Redis over TLS for every service that talks to Redis (features, ingest, gateway): settings and client options.

A `rediss://` URL turns TLS on; `RedisTlsSettings` adds the PEM files (the CA of the server
certificate, and a client certificate for servers with `tls-auth-clients yes`) and refuses TLS
files with a plain `redis://` URL, which would otherwise connect in plaintext while the
operator believes it is encrypted. A service with several Redis URLs (the gateway: cache, async
results, batch jobs) lists them in `redis_tls_urls()`; the files then apply to every one of them.
`ssl_options(url, tls)` gives the keyword arguments for redis-py's `from_url` (sync or asyncio):
certificate and host name verified, TLS 1.2+.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator


@dataclass(frozen=True)
class RedisTls:
    """PEM files for a rediss:// connection: the CA of the server certificate (None = system CAs)
    and an optional client certificate and key."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


class RedisTlsSettings(BaseModel):
    """Mixin of the `redis_tls_*` settings (with the service's env prefix)."""

    redis_tls_ca_path: Path | None = Field(
        None, description="PEM CA that signs the Redis server certificate (rediss:// only; unset = system CAs)."
    )
    redis_tls_cert_path: Path | None = Field(
        None, description="PEM client certificate for Redis (`tls-auth-clients yes`; rediss:// only)."
    )
    redis_tls_key_path: Path | None = Field(None, description="PEM private key of `redis_tls_cert_path`.")

    def redis_tls_urls(self) -> dict[str, str]:
        """The Redis URLs the `redis_tls_*` files apply to, by setting name (empty URLs left out);
        a service with other URL settings than `redis_url` overrides this."""
        url = str(getattr(self, "redis_url", ""))
        return {"redis_url": url} if url else {}

    @model_validator(mode="after")
    def _redis_tls_needs_rediss(self) -> RedisTlsSettings:
        if any((self.redis_tls_ca_path, self.redis_tls_cert_path, self.redis_tls_key_path)):
            urls = self.redis_tls_urls()
            plain = sorted(name for name, url in urls.items() if not url.startswith(("rediss://", "rediss+cluster://")))
            if not urls:
                raise ValueError("redis_tls_* are set but no Redis URL is (a rediss:// URL is needed)")
            if plain:
                names = ", ".join(plain)
                raise ValueError(
                    f"redis_tls_* are set but {names} is not rediss:// (the connection would be plaintext)"
                )
        if bool(self.redis_tls_cert_path) != bool(self.redis_tls_key_path):
            raise ValueError("redis_tls_cert_path and redis_tls_key_path go together")
        return self

    @property
    def redis_tls(self) -> RedisTls:
        return RedisTls(self.redis_tls_ca_path, self.redis_tls_cert_path, self.redis_tls_key_path)


def ssl_options(url: str, tls: RedisTls | None = None) -> dict[str, Any]:
    """redis-py `from_url` keyword arguments for `url`: empty for redis://, verified TLS for rediss://."""
    if not url.startswith("rediss://"):
        return {}
    tls = tls or RedisTls()
    options: dict[str, Any] = {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_min_version": ssl.TLSVersion.TLSv1_2,
    }
    if tls.ca is not None:
        options["ssl_ca_certs"] = str(tls.ca)
    if tls.cert is not None and tls.key is not None:
        options |= {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    return options
