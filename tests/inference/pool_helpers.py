"""Shared pieces of the real model-pool tests: tiny per-segment models and a sampler that
measures what the serving process (ORT worker or tritonserver) itself reports loaded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import yaml
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from ..models.builders import classifier_spec, linear_onnx, write_model


def tiny_repo(repo: Path, names: list[str]) -> dict[str, int]:
    """One tiny classifier per name (P(fraud) = softmax of amount * [-w, w], w distinct); sizes in bytes."""
    sizes = {}
    for i, name in enumerate(names):
        w = 0.1 * (i + 1)
        onnx_bytes = linear_onnx(np.array([[-w, w]]), softmax=True)
        write_model(repo, classifier_spec(name, "1"), onnx_bytes)
        sizes[name] = len(onnx_bytes)
    return sizes


def expected_fraud(names: list[str], name: str, amount: float) -> float:
    w = 0.1 * (names.index(name) + 1)
    return float(1.0 / (1.0 + np.exp(-2 * w * amount)))


def routing_file(path: Path, eager_models: list[str]) -> Path:
    path.write_text(
        yaml.safe_dump({"models": {m: {"versions": [{"version": "1", "weight": 100}]} for m in eager_models}})
    )
    return path


MIN_SAMPLES = 20  # check_budget wants more than this many polls


@dataclass
class Sampler:
    """Polls RepositoryIndex(ready=True) of a KServe v2 server: the server's own view of what it holds."""

    address: str
    sizes: dict[str, int]
    max_models: int = 0
    max_bytes: int = 0
    samples: int = 0
    seen: set[str] = field(default_factory=set)
    last: set[str] = field(default_factory=set)
    metadata: tuple[tuple[str, str], ...] = ()  # e.g. Triton's admin-key header (restricted protocols)

    async def once(self, stub: pb_grpc.GRPCInferenceServiceStub) -> set[str]:
        reply = await stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), timeout=5, metadata=self.metadata)
        ready = {f"{m.name}:{m.version or '1'}" for m in reply.models if m.state == "READY"}
        self.max_models = max(self.max_models, len(ready))
        self.max_bytes = max(self.max_bytes, sum(self.sizes[r.split(":")[0]] for r in ready))
        self.samples += 1
        self.seen |= ready
        self.last = ready
        return ready

    @contextlib.asynccontextmanager
    async def running(self, period_s: float = 0.01) -> AsyncIterator[Sampler]:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)

            async def loop() -> None:
                while True:
                    await self.once(stub)
                    await asyncio.sleep(period_s)

            task = asyncio.create_task(loop())
            try:
                yield self
                # On a loaded box the scenario may finish before the sampler has polled much:
                # keep observing the (now idle) server until enough samples exist, bounded.
                for _ in range(int(10.0 / period_s)):
                    if self.samples > MIN_SAMPLES:
                        break
                    await asyncio.sleep(period_s)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await self.once(stub)
