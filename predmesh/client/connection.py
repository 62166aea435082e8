"""How the client reaches the edge: target, TLS material, API key, default deadline and retries.

`Connection` is immutable and shared by the sync and asyncio clients; it reads the TLS files once,
when the client opens its channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from predmesh.client.retry import RetryPolicy

API_KEY_HEADER = "x-api-key"


@dataclass(frozen=True)
class Connection:
    """`target` host:port of the edge (or a gateway). TLS unless `plaintext`: trusting `ca_file` (else the
    system roots), with `cert_file`/`key_file` as a client certificate (mutual TLS) and `server_name` as
    the name the certificate must carry (default: the target's host). `api_key` goes with every call.
    `timeout_s` is the default deadline of a call, retries included."""

    target: str
    api_key: str = ""
    plaintext: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""
    timeout_s: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    channel_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((API_KEY_HEADER, self.api_key),) if self.api_key else ()

    def credentials(self) -> grpc.ChannelCredentials | None:
        """Channel credentials (None = plaintext)."""
        if self.plaintext:
            return None
        roots = Path(self.ca_file).read_bytes() if self.ca_file else None
        key = Path(self.key_file).read_bytes() if self.key_file else None
        chain = Path(self.cert_file).read_bytes() if self.cert_file else None
        return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)

    def options(self) -> list[tuple[str, Any]]:
        extra = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name and not self.plaintext else []
        return [*extra, *self.channel_options]

    def channel(self) -> grpc.Channel:
        """A blocking channel to `target` with these credentials and options; the caller closes it."""
        creds, opts = self.credentials(), self.options()
        if creds is None:
            return grpc.insecure_channel(self.target, options=opts)
        return grpc.secure_channel(self.target, creds, options=opts)

    def aio_channel(self) -> grpc.aio.Channel:
        """The asyncio twin of `channel()`."""
        creds, opts = self.credentials(), self.options()
        if creds is None:
            return grpc.aio.insecure_channel(self.target, options=opts)
        return grpc.aio.secure_channel(self.target, creds, options=opts)
