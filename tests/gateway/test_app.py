"""GatewayApp lifecycle: a start that fails midway closes the logger client, watcher and channels."""

from __future__ import annotations

from pathlib import Path

import pytest

import services.gateway.app as gateway_app
from predmesh.local.procs import free_port
from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings
from tests.common.lifecycle_support import assert_channel_closed, assert_failed_start_leaks_nothing, record_channels


async def test_failed_start_closes_everything_it_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("models: {}\n")
    keys = tmp_path / "keys.json"
    keys.write_text('{"k": ["*"]}')
    settings = GatewaySettings(
        api_keys_path=str(keys),  # a key file watcher with its poll task
        api_keys_poll_ms=10,
        port=0,
        grace_s=0.1,
        features_target=f"127.0.0.1:{free_port()}",
        inference_target=f"127.0.0.1:{free_port()}",
        logger_target=f"127.0.0.1:{free_port()}",  # a logger client with its sender task
        routing_path=str(routing),  # a routing watcher with its poll task
        routing_poll_ms=10,
    )
    channels = record_channels(monkeypatch, gateway_app)
    await assert_failed_start_leaks_nothing(GatewayApp(settings), monkeypatch)
    assert len(channels) == 2  # features and inference (the logger client opens its own)
    for channel in channels:
        await assert_channel_closed(channel)
