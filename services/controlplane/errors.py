"""Control-plane errors (transport-neutral; mapped to gRPC status by the shared interceptor)."""

from __future__ import annotations

from predmesh.common.errors import FailedPrecondition, InvalidArgument


class InvalidConfig(InvalidArgument):
    """A mesh config that does not validate (bad field, unknown cluster in a route...)."""


class InconsistentSnapshot(FailedPrecondition):
    """A snapshot whose resources reference each other inconsistently; it is never published."""
