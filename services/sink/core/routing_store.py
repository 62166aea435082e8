"""Where the rollout controller reads and rewrites the live routing table.

`RoutingStore`: `read()` returns the routing document (the YAML of
services/gateway/core/routing.py as a dict); `rewrite(change)` reads it again, lets `change` edit
it in place and, when `change` returns True, writes it back so that no concurrent writer's change
is lost; returns whether it wrote. Two implementations:

- `FileRoutingStore(path)`: the file (locally, `predmesh up`): `predmesh.common.rollout.rewrite_routing`
  (a lock file, a temp file renamed over the original; the gateways' FileWatcher applies it);
- `services.sink.backends.kube_configmap.ConfigMapRoutingStore`: the routing ConfigMap through the
  Kubernetes API (in a cluster; optimistic concurrency on the object's resourceVersion). The
  gateways mount that ConfigMap as a directory volume and apply the kubelet's update live.
Both block (call them from a worker thread).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml

from predmesh.common.rollout import rewrite_routing

Change = Callable[[dict[str, Any]], bool]


class RoutingStore(Protocol):
    def read(self) -> dict[str, Any]: ...

    def rewrite(self, change: Change) -> bool: ...


class FileRoutingStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.path.read_text()) or {})

    def rewrite(self, change: Change) -> bool:
        return rewrite_routing(self.path, change)

    def __repr__(self) -> str:
        return f"FileRoutingStore({str(self.path)!r})"
