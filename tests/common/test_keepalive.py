"""Client keepalive pings and the server's ping policy agree (no GOAWAY too_many_pings between our services)."""

from __future__ import annotations

from predmesh.common.grpcclient import CHANNEL_OPTIONS
from predmesh.common.grpcserver import SERVER_KEEPALIVE_OPTIONS
from services.inference.backends.kserve_grpc import CHANNEL_ARGS as KSERVE_OPTIONS


def test_clients_never_ping_faster_than_servers_accept() -> None:
    server = dict(SERVER_KEEPALIVE_OPTIONS)
    accepted_every_ms = server["grpc.http2.min_recv_ping_interval_without_data_ms"]
    assert server["grpc.keepalive_permit_without_calls"] == 1  # idle streams may be pinged
    for options in (CHANNEL_OPTIONS, KSERVE_OPTIONS):
        client = dict(options)
        # Pings on idle streams (no data) are sent every keepalive_time_ms; the server must accept that rate.
        assert client["grpc.keepalive_time_ms"] >= accepted_every_ms, options
