"""Fixtures of the features tests: a real FeaturesApp on a free port over real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from predmesh.demo import FEATURE_REGISTRY
from predmesh.v1 import features_pb2_grpc
from services.features.app import FeaturesApp
from services.features.settings import FeaturesSettings

StartApp = Callable[..., Awaitable[FeaturesApp]]


@pytest.fixture
async def start_app() -> AsyncIterator[StartApp]:
    """Start FeaturesApps with settings overrides (cache off unless asked); all stopped at teardown."""
    apps: list[FeaturesApp] = []

    async def start(**overrides: Any) -> FeaturesApp:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "grace_s": 0.2,
            "cache_ttl_ms": 0,
            "registry_path": FEATURE_REGISTRY,
        }
        values.update(overrides)
        app = FeaturesApp(FeaturesSettings(**values))
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in reversed(apps):
        await app.stop()


@pytest.fixture
async def app(start_app: StartApp, redis_url: str) -> FeaturesApp:
    return await start_app(redis_url=redis_url, max_entities=8)


@pytest.fixture
async def stub(app: FeaturesApp) -> AsyncIterator[features_pb2_grpc.FeatureServiceStub]:
    async with grpc.aio.insecure_channel(app.address) as channel:
        yield features_pb2_grpc.FeatureServiceStub(channel)


async def seed(redis_url: str, entities: Mapping[str, Mapping[str, str]], entity_type: str = "user") -> None:
    """Write raw hashes features:{entity_type}:{id}."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        for entity_id, fields in entities.items():
            mapping: dict[Any, Any] = dict(fields)
            await client.hset(f"features:{entity_type}:{entity_id}", mapping=mapping)
    finally:
        await client.aclose()
