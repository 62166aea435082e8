"""Inference test fixtures: demo models trained once per session, real gRPC servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from predmesh.v1 import inference_pb2_grpc
from services.inference.app import InferenceApp
from services.inference.settings import InferenceSettings
from tests.demo.support import DemoModels

__all__ = ["DemoModels", "make_settings"]


def make_settings(repo: Path, **overrides: Any) -> InferenceSettings:
    return InferenceSettings(model_repository=repo, host="127.0.0.1", port=0, grace_s=0.5, **overrides)


@pytest.fixture
async def demo_app(demo_models: DemoModels) -> AsyncIterator[InferenceApp]:
    """A real InferenceApp (grpc.aio server on a free port) serving the demo models."""
    app = InferenceApp(make_settings(demo_models.repo, max_rows=500, offload_rows=64))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def stub(demo_app: InferenceApp) -> AsyncIterator[inference_pb2_grpc.InferenceServiceStub]:
    async with grpc.aio.insecure_channel(demo_app.address) as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)
