"""Credentials never reach a log line; upstream transport errors never name internal addresses."""

from __future__ import annotations

import io
import logging

import grpc
import pytest

from predmesh.common import redact
from predmesh.common.errors import Unavailable
from predmesh.common.grpcclient import upstream_error
from predmesh.local.procs import free_port


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("redis://:s3cret@redis-master:6379/0", "redis://:***@redis-master:6379/0"),
        ("rediss://default:s3cret@10.0.0.5:6380", "rediss://default:***@10.0.0.5:6380"),
        ("sasl kafka://svc:p%40ss@broker:9093 up", "sasl kafka://svc:***@broker:9093 up"),
        ("http://collector:4318/v1?token=abc&x=1", "http://collector:4318/v1?token=***&x=1"),
        ("redis://redis-master:6379/0", "redis://redis-master:6379/0"),
    ],
)
def test_redact_url(raw: str, safe: str) -> None:
    assert redact.redact_url(raw) == safe


def test_every_log_line_is_redacted_by_the_installed_filter() -> None:
    logger = logging.getLogger("test.redact")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        redact.install(logger)
        logger.warning("features using %s", "redis://:hunter2@redis:6379/0")
        logger.warning("plain redis://user:hunter2@redis:6379/0 in the message")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "hunter2" not in out and out.count("***") == 2


async def test_upstream_unavailable_message_names_no_address() -> None:
    port = free_port()  # nobody listens
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/x.Y/Z", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"", timeout=2)
    assert str(port) in (info.value.details() or "")  # what gRPC itself reports...
    err = upstream_error(info.value, "features")
    assert isinstance(err, Unavailable) and err.message == "features unavailable"  # ...and what callers see
