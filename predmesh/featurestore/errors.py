"""Errors of the feature registry (`predmesh.featurestore.registry`).

`UnknownEntityType` is a request-time error (NOT_FOUND through the shared interceptor);
`RegistryError` is a configuration error raised while loading a registry file.
"""

from __future__ import annotations

from predmesh.common.errors import NotFound


class UnknownEntityType(NotFound):
    """The request names an entity type with no registered feature group."""


class RegistryError(ValueError):
    """The feature registry file is malformed; the message names the file and the offending path."""
