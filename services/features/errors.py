"""Errors of the features service.

Request-time errors subclass the transport-neutral `predmesh.common.errors` types so
the shared interceptor maps them to gRPC status codes. `RegistryError` and
`LoadError` are configuration/CLI errors raised outside any RPC. The registry's own
errors (`RegistryError`, `UnknownEntityType`) live in `predmesh.featurestore.errors`
and are re-exported here.
"""

from __future__ import annotations

from predmesh.common.errors import InvalidArgument, Unavailable
from predmesh.featurestore.errors import RegistryError, UnknownEntityType

__all__ = [
    "BadEntities",
    "InvalidContextValue",
    "LoadError",
    "RegistryError",
    "StoreUnavailable",
    "UnknownEntityType",
    "UnknownFeature",
]


class UnknownFeature(InvalidArgument):
    """A requested feature or a context key is not registered for the entity type."""


class InvalidContextValue(InvalidArgument):
    """A request-context value has the wrong kind, is NaN/inf, out of range or not a category."""


class BadEntities(InvalidArgument):
    """The entity list is empty, too long, or holds an empty/over-long entity id."""


class StoreUnavailable(Unavailable):
    """Redis could not be reached or did not answer within the timeout."""


class LoadError(ValueError):
    """A feature load was rejected before anything was written (bad columns, ids or values)."""
