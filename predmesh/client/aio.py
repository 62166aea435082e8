"""asyncio client of the predmesh API: `Client`'s methods as coroutines, on a grpc.aio channel.

    async with AsyncClient("edge.example.com:443", api_key=key, ca_file="ca.crt") as client:
        p = await client.predict("fraud", "u00042", {"amount": 120.5}, timeout_s=0.5)

One channel per client, opened in the constructor (bound to the running event loop), closed by
`await close()` (or the `async with` block). Use it from that loop only; concurrent calls are fine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc

from predmesh.client import convert
from predmesh.client.connection import Connection
from predmesh.client.retry import Attempts
from predmesh.client.types import BatchItem, BatchPrediction, Context, ModelHealth, Prediction, PredictionStatus
from predmesh.v1 import health_pb2, jobs_pb2, prediction_pb2, prediction_pb2_grpc

T = TypeVar("T")


class AsyncClient:
    """See the module docstring; keyword arguments are `Connection`'s."""

    def __init__(self, target: str, **options: Any) -> None:
        self.connection = Connection(target, **options)
        self._channel = self.connection.aio_channel()
        self._stub = prediction_pb2_grpc.PredictionServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any, timeout_s: float | None) -> T:
        """`await method(request)` with the deadline spread over every attempt and retries on UNAVAILABLE."""
        attempts = Attempts(self.connection.retry, self.connection.timeout_s if timeout_s is None else timeout_s)
        while True:
            try:
                return await method(request, timeout=attempts.next_timeout(), metadata=self.connection.metadata())
            except grpc.RpcError as err:
                await asyncio.sleep(attempts.after_failure(err))

    async def predict(
        self,
        model: str,
        entity_id: str,
        context: Context | None = None,
        *,
        version: str = "",
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> Prediction:
        """Score one entity; `context` holds request-time features (numbers, strings, bools)."""
        request = convert.predict_request(model, entity_id, context, version, request_id)
        return convert.prediction_from_pb(await self._call(self._stub.Predict, request, timeout_s))

    async def predict_batch(
        self,
        model: str,
        items: Iterable[str | BatchItem],
        *,
        version: str = "",
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> BatchPrediction:
        """Score many entities of one model in one call (entity ids, or BatchItems with their own context)."""
        request = convert.batch_request(model, items, version, request_id)
        return convert.batch_from_pb(await self._call(self._stub.PredictBatch, request, timeout_s))

    async def predict_async(
        self,
        model: str,
        entity_id: str,
        callback_target: str,
        context: Context | None = None,
        *,
        version: str = "",
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> str:
        """Submit a prediction delivered later to `callback_target`'s PredictionCallback; its request id."""
        request = prediction_pb2.PredictAsyncRequest(
            request=convert.predict_request(model, entity_id, context, version, request_id),
            callback_target=callback_target,
        )
        return (await self._call(self._stub.PredictAsync, request, timeout_s)).request_id

    async def get_model_health(self, model: str, *, timeout_s: float | None = None) -> ModelHealth:
        """How `model` is served: versions, weights, loaded state, feature store, latency, breakers, degraded ratio."""
        request = health_pb2.GetModelHealthRequest(model=model)
        return convert.health_from_pb(await self._call(self._stub.GetModelHealth, request, timeout_s))

    async def get_prediction(self, request_id: str, *, timeout_s: float | None = None) -> PredictionStatus:
        """State of a PredictAsync request (PENDING / DONE with the result / FAILED with the status).
        NotFoundError after the gateway's result TTL or for an id submitted with another API key."""
        request = jobs_pb2.GetPredictionRequest(request_id=request_id)
        return convert.status_from_pb(await self._call(self._stub.GetPrediction, request, timeout_s))
