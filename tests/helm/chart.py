"""Helpers for the Helm chart tests: the chart's paths, a cached `helm template` runner and
small accessors over rendered manifests."""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "predmesh"
VALUES = Path(__file__).resolve().parent / "values"
RELEASE = "pm"
NAMESPACE = "predmesh"

# Value sets rendered by most tests: name -> values files (relative to tests/helm/values).
# base.yaml (API keys, without which the chart refuses to render) comes first in each.
BASE = "base.yaml"
VALUE_SETS: dict[str, tuple[str, ...]] = {
    "default": (BASE,),
    "canary": (BASE, "canary.yaml"),
    "gpu-keda": (BASE, "gpu-keda.yaml"),
    "gpu-hpa": (BASE, "gpu-hpa.yaml"),
    "gpu-image": (BASE, "gpu-image.yaml"),
    "minimal": (BASE, "minimal.yaml"),
    "observability": (BASE, "observability.yaml"),
    "ingest": (BASE, "ingest.yaml"),
    "cache": (BASE, "cache.yaml"),
    "rollout": (BASE, "rollout.yaml"),
    "background": (BASE, "background.yaml"),
}

Manifest = dict[str, Any]
PYTHON_SERVICES = {  # component -> env prefix (the ORT worker's is a value: envPrefix)
    "controlplane": "PREDMESH_CONTROLPLANE_",
    "gateway": "PREDMESH_GATEWAY_",
    "features": "PREDMESH_FEATURES_",
    "inference": "PREDMESH_INFERENCE_",
    "logger": "PREDMESH_LOGGER_",
    "monitor": "PREDMESH_MONITOR_",
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def load_helm_tools() -> Any:
    """scripts/helm_tools.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("predmesh_helm_tools", ROOT / "scripts" / "helm_tools.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class HelmRun:
    """Runs helm on the chart; results of `template` are parsed and cached per argument list."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self._cache: dict[tuple[str, ...], list[Manifest]] = {}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
        )

    def template_args(self, files: Sequence[str] = (), extra: Sequence[str] = (), base: bool = True) -> list[str]:
        """`helm template` arguments; `base` prepends base.yaml (API keys) unless `files` has it."""
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        if base and BASE not in files:
            files = (BASE, *files)
        for name in files:
            args += ["-f", str(VALUES / name)]
        return [*args, *extra]

    def template(self, files: Sequence[str] = (), extra: Sequence[str] = ()) -> list[Manifest]:
        key = (*files, "--", *extra)
        if key not in self._cache:
            proc = self.run(*self.template_args(files, extra))
            assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
            self._cache[key] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
        return self._cache[key]


def find(docs: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    """Manifests of `kind`, optionally with metadata.name == f"{RELEASE}-predmesh-{name}"."""
    out = [d for d in docs if d.get("kind") == kind]
    if name is not None:
        out = [d for d in out if d["metadata"]["name"] == f"{RELEASE}-predmesh-{name}"]
    return out


def one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, got {[d['metadata']['name'] for d in find(docs, kind)]}"
    return found[0]


def env_of(container: Manifest) -> dict[str, Any]:
    """Container env as name -> value (or the valueFrom dict)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def workload(docs: list[Manifest], component: str) -> Manifest:
    """The one Deployment or StatefulSet of `component`."""
    found = [d for kind in WORKLOAD_KINDS for d in find(docs, kind, component)]
    assert len(found) == 1, f"{component}: {len(found)} workloads"
    return found[0]


def pod_spec(docs: list[Manifest], component: str) -> Manifest:
    return workload(docs, component)["spec"]["template"]["spec"]


def main_container(docs: list[Manifest], component: str) -> Manifest:
    return pod_spec(docs, component)["containers"][0]


def all_pod_specs(docs: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
