"""Client-side helpers: channel options and mapping upstream gRPC errors to PredmeshError."""

from __future__ import annotations

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

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # Spread calls over every address a target resolves to (e.g. dns:///svc-headless:50051).
    ("grpc.lb_policy_name", "round_robin"),
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
    anything else means the dependency is unusable: UNAVAILABLE.
    """
    kind = _PASS_THROUGH.get(err.code(), Unavailable)
    detail = err.details() or err.code().name
    if kind in (Unavailable, DeadlineExceeded):
        return kind(f"{upstream}: {detail}")
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
