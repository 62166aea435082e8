"""Typed errors of the predmesh client: one class per family of gRPC status codes.

Every failed call raises a `PredmeshClientError` subclass carrying the gRPC `code` (a
`grpc.StatusCode`), the server's `message` and, when the call got that far, `attempts` made.
Catch the family you can act on (`UnavailableError`: try later; `InvalidRequestError`: fix the
request) or the base class for everything.
"""

from __future__ import annotations

import grpc


class PredmeshClientError(Exception):
    """Base of every error the client raises for a failed call."""

    def __init__(self, code: grpc.StatusCode, message: str, attempts: int = 1) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.attempts = attempts


class InvalidRequestError(PredmeshClientError):
    """INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE: the request must change before it can succeed."""


class NotFoundError(PredmeshClientError):
    """NOT_FOUND: unknown model, version or request id."""


class AuthenticationError(PredmeshClientError):
    """UNAUTHENTICATED: no API key, or one the gateway does not know."""


class PermissionDeniedError(PredmeshClientError):
    """PERMISSION_DENIED: the key may not use this model (or the caller's certificate this method)."""


class RateLimitedError(PredmeshClientError):
    """RESOURCE_EXHAUSTED: rate limit, queue or batch limit reached."""


class UnavailableError(PredmeshClientError):
    """UNAVAILABLE: the edge or gateway could not be reached or is draining (retried with back-off)."""


class DeadlineExceededError(PredmeshClientError):
    """DEADLINE_EXCEEDED: the call's deadline passed (including time spent on retries)."""


class CancelledError(PredmeshClientError):
    """CANCELLED or ABORTED."""


class ServerError(PredmeshClientError):
    """INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS: a fault on the server side."""


_FAMILIES: dict[grpc.StatusCode, type[PredmeshClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: InvalidRequestError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.ABORTED: CancelledError,
}


def error_for(code: grpc.StatusCode, message: str, attempts: int = 1) -> PredmeshClientError:
    """The typed error of `code` (ServerError for INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS)."""
    return _FAMILIES.get(code, ServerError)(code, message, attempts)


def from_rpc_error(err: grpc.RpcError, attempts: int = 1) -> PredmeshClientError:
    """The typed error of a failed gRPC call (sync or grpc.aio)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else ""
    return error_for(code or grpc.StatusCode.UNKNOWN, details or "", attempts)
