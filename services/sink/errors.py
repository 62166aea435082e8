"""Sink errors; each maps to one gRPC status in the shared ErrorInterceptor."""

from __future__ import annotations

from predmesh.common.errors import InvalidArgument, PredmeshError, Unavailable

__all__ = ["EvidenceUnavailable", "InvalidArgument", "QueryFailed", "StoreUnavailable"]


class StoreUnavailable(Unavailable):
    """The analytics store could not be reached or refused a write; retried by the caller."""


class QueryFailed(InvalidArgument):
    """The store rejected a query (syntax, unknown table or column); the message is the store's."""


class StoreError(PredmeshError):
    """Any other store failure (INTERNAL)."""


class EvidenceUnavailable(Unavailable):
    """A rollout evidence source (Prometheus) failed or answered something unusable: the controller
    makes no decision for that rollout on this pass (never a rollback on missing data)."""
