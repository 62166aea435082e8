"""Gateway errors: the shared transport-neutral types, re-exported for the gateway's modules."""

from predmesh.common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PredmeshError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "DeadlineExceeded",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "PredmeshError",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]
