"""predmesh: a real-time ML inference mesh.

This package holds what every service shares: generated protobuf code (`predmesh.v1`),
transport-neutral errors and settings (`predmesh.common`), local process management for
`predmesh up` and the tests (`predmesh.local`) and the `predmesh` CLI.
"""

__version__ = "0.1.0"
