"""Client-side helpers: channel options and mapping upstream gRPC errors to PredmeshError."""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc

from predmesh.common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PredmeshError,
    ResourceExhausted,
    Unavailable,
)
from predmesh.common.telemetry import client_interceptors, tracing_enabled
from predmesh.common.tls import TlsFiles
from predmesh.common.tlschannel import ReloadingChannel

log = logging.getLogger(__name__)

# Largest message any predmesh client sends or receives; every server receives up to the same
# size (predmesh.common.grpcserver), so a message one side accepts is never refused by the other.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Spread calls over every address a target resolves to (e.g. dns:///svc-headless:50051).
    ("grpc.lb_policy_name", "round_robin"),
    # A restarted upstream is found again within ~1 s instead of gRPC's default 2 min back-off cap.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]

# For idempotent unary upstream calls over several replicas (the gateway's GetFeatures and Infer):
# a call that fails UNAVAILABLE (its replica died with the call in flight, or refused it while
# draining) is re-sent, and round_robin picks another, READY replica. Within the call's deadline.
RETRY_UNAVAILABLE_OPTIONS: list[tuple[str, Any]] = [
    (
        "grpc.service_config",
        json.dumps(
            {
                "methodConfig": [
                    {
                        "name": [{}],
                        "retryPolicy": {
                            "maxAttempts": 3,
                            "initialBackoff": "0.01s",
                            "maxBackoff": "0.1s",
                            "backoffMultiplier": 2,
                            "retryableStatusCodes": ["UNAVAILABLE"],
                        },
                    }
                ]
            }
        ),
    ),
]

_PASS_THROUGH: dict[grpc.StatusCode, type[PredmeshError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def upstream_error(err: grpc.aio.AioRpcError, upstream: str) -> PredmeshError:
    """Translate an upstream call's failure into the error this service reports.

    Caller errors (INVALID_ARGUMENT, NOT_FOUND...) pass through with their message;
    anything else means the dependency is unusable: UNAVAILABLE. Transport failures get a
    generic message ("features unavailable"): gRPC's own details name internal addresses
    (`ipv4:10.0.3.7:50052`) and must not reach callers; the detail goes to the log instead.
    """
    kind = _PASS_THROUGH.get(err.code(), Unavailable)
    detail = err.details() or err.code().name
    if kind is Unavailable:
        log.warning("%s unavailable: %s %s", upstream, err.code().name, detail)
        return Unavailable(f"{upstream} unavailable")
    if kind is DeadlineExceeded:
        log.info("%s deadline exceeded: %s", upstream, detail)
        return DeadlineExceeded(f"{upstream}: deadline exceeded")
    return kind(detail)


def insecure_channel(target: str) -> grpc.aio.Channel:
    """An upstream channel with CHANNEL_OPTIONS and, while tracing is on, trace-context propagation.

    The tracing interceptors (`telemetry.client_interceptors`) are added only when tracing is
    configured at the time the channel is created (grpc.aio's intercepted calls cost ~50 us
    each even when they do nothing): apps that open channels before building their
    GrpcServer call `telemetry.configure_tracing(settings)` first.
    """
    interceptors = client_interceptors() if tracing_enabled() else None
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=interceptors)


def channel(
    target: str,
    tls: TlsFiles | None = None,
    poll_s: float = 5.0,
    extra_options: list[tuple[str, Any]] | None = None,
) -> grpc.aio.Channel:
    """`insecure_channel` or, with `tls`, the same channel over mutual TLS (this service's certificate);
    `extra_options` are added to CHANNEL_OPTIONS (e.g. RETRY_UNAVAILABLE_OPTIONS).

    An mTLS channel made on a running event loop re-reads the certificate files every `poll_s`
    and switches to new ones without a restart (`tlschannel.ReloadingChannel`)."""
    interceptors = client_interceptors() if tracing_enabled() else None
    options = [*CHANNEL_OPTIONS, *(extra_options or [])]
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    if target.startswith(("ipv4:", "ipv6:")):
        # A static list (`ipv4:a:p,b:q`, the local mesh's replicas) names no host; gRPC would check the
        # certificate against the whole list. Check it against the first address instead.
        options.append(("grpc.default_authority", target.split(":", 1)[1].split(",")[0]))

    def make(creds: grpc.ChannelCredentials) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(target, creds, options=options, interceptors=interceptors)

    return ReloadingChannel(tls, make, poll_s=poll_s, name=f"channel to {target}")


def client_tls(settings: Any) -> TlsFiles | None:
    """The service's own certificate files for its channels (None when mTLS is off)."""
    return TlsFiles.from_settings(settings.tls_cert_path, settings.tls_key_path, settings.tls_ca_path)
