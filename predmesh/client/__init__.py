"""predmesh.client: the Python client library of the predmesh prediction API.

`Client` (blocking) and `AsyncClient` (asyncio) call the edge (or a gateway) with an API key,
TLS (CA file, optional client certificate), a deadline per call and retries with exponential
back-off and jitter on UNAVAILABLE only (`RetryPolicy`). Results are typed (`Prediction`,
`BatchPrediction`); failures raise one exception class per status family (`errors`).

Library layer: imports predmesh.v1 and predmesh.common only, never services or tooling.
"""

from predmesh.client.aio import AsyncClient
from predmesh.client.connection import Connection
from predmesh.client.errors import (
    AuthenticationError,
    CancelledError,
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PredmeshClientError,
    RateLimitedError,
    ServerError,
    UnavailableError,
)
from predmesh.client.retry import NO_RETRY, RetryPolicy
from predmesh.client.sync import Client
from predmesh.client.types import (
    BatchItem,
    BatchPrediction,
    ModelHealth,
    Prediction,
    PredictionStatus,
    Score,
    Timings,
    VersionHealth,
)

__all__ = [
    "NO_RETRY",
    "AsyncClient",
    "AuthenticationError",
    "BatchItem",
    "BatchPrediction",
    "CancelledError",
    "Client",
    "Connection",
    "DeadlineExceededError",
    "InvalidRequestError",
    "ModelHealth",
    "NotFoundError",
    "PermissionDeniedError",
    "Prediction",
    "PredictionStatus",
    "PredmeshClientError",
    "RateLimitedError",
    "RetryPolicy",
    "Score",
    "ServerError",
    "Timings",
    "UnavailableError",
    "VersionHealth",
]
