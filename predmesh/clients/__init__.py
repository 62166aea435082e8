"""Clients of predmesh services that other services (and tooling) import.

Library layer: modules here import only `predmesh.common` and `predmesh.v1`, never a
service's internals, so a service can call another one without importing it
(the import contract in pyproject.toml enforces this). The service that owns the
protocol imports the same module for the parts both sides must agree on (e.g.
`events.validate_event`, run by the logger client before sending and by the logger
service on receipt).
"""
