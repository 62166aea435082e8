"""Mutual TLS between predmesh services: credentials for servers and channels, peer identities.

One certificate per service (PEM files: certificate chain, private key, and the CA that signs
every service's certificate), used both to serve and to call. A service's identity is the
first DNS name in its certificate's subject alternative names ("gateway", "inference",
"operator"...); servers authorise each RPC by that identity (`IdentityInterceptor`).

- `server_credentials(files)`: requires and verifies client certificates; the files are
  re-read when they change (checked at most every `poll_s` on a new handshake), so a renewed
  certificate (cert-manager, a rotated Secret) is served without a restart.
- `channel_credentials(files)`: presents the service's certificate and trusts only the mesh CA.
  A grpc channel keeps the credentials it was opened with; `predmesh.common.grpcclient.channel`
  wraps it in a `tlschannel.ReloadingChannel`, which opens a new one when the files change.
- `IdentityInterceptor(rules)`: `rules` maps a method pattern ("/predmesh.v1.FeatureService/*",
  "/predmesh.v1.InferenceService/ReloadModels", "*") to the identities allowed to call it. The
  first matching pattern decides; a method no pattern matches is refused, except the gRPC health
  service (any peer with a valid certificate: probes). Refusal is PERMISSION_DENIED.

Stateless apart from the reload cache; safe to share across threads.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from predmesh.common.handlers import HandlerCache, rewrap

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path

    @classmethod
    def from_settings(cls, cert: Path | str | None, key: Path | str | None, ca: Path | str | None) -> TlsFiles | None:
        """All three paths, or None when none is set; a partial set is a configuration error."""
        given = [p for p in (cert, key, ca) if p]
        if not given:
            return None
        if len(given) != 3:
            raise ValueError("mutual TLS needs all of tls_cert_path, tls_key_path and tls_ca_path")
        return cls(Path(str(cert)), Path(str(key)), Path(str(ca)))

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(certificate chain, private key, CA) bytes (blocking)."""
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()


class _ReloadingServerConfig:
    """The fetcher of grpc.dynamic_ssl_server_credentials: new files -> new configuration."""

    def __init__(self, files: TlsFiles, poll_s: float) -> None:
        self._files = files
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        cert, key, ca = files.read()
        self._digest = hashlib.sha256(cert + key + ca).digest()
        self.initial = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def __call__(self) -> Any:
        with self._lock:
            now = time.monotonic()
            if now - self._checked < self._poll_s:
                return None
            self._checked = now
            try:
                cert, key, ca = self._files.read()
            except OSError as err:
                log.warning("TLS files unreadable, keeping the current certificate: %s", err)
                return None
            digest = hashlib.sha256(cert + key + ca).digest()
            if digest == self._digest:
                return None
            self._digest = digest
            log.info("TLS certificate %s changed: serving the new one", self._files.cert)
            return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def server_credentials(files: TlsFiles, poll_s: float = 5.0) -> grpc.ServerCredentials:
    """mTLS server credentials (client certificates required), re-read when the files change."""
    fetcher = _ReloadingServerConfig(files, poll_s)
    return grpc.dynamic_ssl_server_credentials(fetcher.initial, fetcher, require_client_authentication=True)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    cert, key, ca = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def peer_identities(context: grpc.aio.ServicerContext) -> set[str]:
    """The caller's certificate SANs (DNS names) and common name; empty without a verified certificate."""
    auth = context.auth_context() or {}
    names = [*auth.get("x509_subject_alternative_name", []), *auth.get("x509_common_name", [])]
    return {n.decode() if isinstance(n, bytes) else str(n) for n in names}


def allowed(rules: Sequence[tuple[str, frozenset[str]]], method: str, identities: set[str]) -> bool:
    for pattern, who in rules:
        if fnmatch.fnmatchcase(method, pattern):
            return "*" in who or bool(who & identities)
    return method.startswith(HEALTH_PREFIX) and bool(identities)


class _RequireIdentity:
    """Around one RPC: PERMISSION_DENIED before the behaviour runs unless the peer may call it.
    A plain class (entered on every RPC, like grpcserver's error mapping)."""

    __slots__ = ("_context", "_method", "_rules")

    def __init__(
        self, rules: Sequence[tuple[str, frozenset[str]]], method: str, context: grpc.aio.ServicerContext
    ) -> None:
        self._rules = rules
        self._method = method
        self._context = context

    async def __aenter__(self) -> None:
        identities = peer_identities(self._context)
        if not allowed(self._rules, self._method, identities):
            log.warning("refused %s for peer %s", self._method, sorted(identities) or "without certificate")
            await self._context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller may not call this method")

    async def __aexit__(self, *_exc: object) -> bool:
        return False


class IdentityInterceptor(grpc.aio.ServerInterceptor):
    """PERMISSION_DENIED unless the caller's certificate identity may call the method.
    Wraps handlers through `handlers.rewrap`, once per method (`HandlerCache`)."""

    def __init__(self, rules: Mapping[str, Sequence[str]]) -> None:
        self._rules = [(pattern, frozenset(who)) for pattern, who in rules.items()]
        self._cache = HandlerCache(
            lambda handler, method: rewrap(
                handler, method, lambda m, _streaming, context: _RequireIdentity(self._rules, m, context)
            )
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._cache.get(handler, handler_call_details.method)
