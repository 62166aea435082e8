"""Transport-neutral errors.

Core code raises `PredmeshError` subclasses; exactly one gRPC interceptor
(`predmesh.common.grpcserver.ErrorInterceptor`) maps them to gRPC status codes.
Any other exception becomes INTERNAL with a generic message.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Error categories; names match gRPC status code names."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    INTERNAL = "INTERNAL"


class PredmeshError(Exception):
    """Base of every error predmesh reports to callers on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(PredmeshError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(PredmeshError):
    code = ErrorCode.NOT_FOUND


class Unauthenticated(PredmeshError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(PredmeshError):
    code = ErrorCode.PERMISSION_DENIED


class ResourceExhausted(PredmeshError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class Unavailable(PredmeshError):
    code = ErrorCode.UNAVAILABLE


class DeadlineExceeded(PredmeshError):
    code = ErrorCode.DEADLINE_EXCEEDED


class FailedPrecondition(PredmeshError):
    code = ErrorCode.FAILED_PRECONDITION
