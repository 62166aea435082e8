"""Model versions on disk and the in-memory registry of them.

Repository layout (Triton-compatible; Triton's own `<name>/config.pbtxt` and
`<name>/configs/` may sit beside the version directories and are ignored here)::

    <repo>/<name>/<version>/model.onnx
    <repo>/<name>/<version>/model.yaml     # predmesh spec, see core/spec.py

Version directories are non-negative integers, compared numerically ("10" > "9");
the highest is the default. A `<name>/<version>/` without `model.yaml` is skipped with
a warning (e.g. a Triton-only model); an invalid spec fails the whole scan.

`ModelRegistry` is immutable after construction and safe to read from any thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from services.inference.core.spec import ONNX_FILE, SPEC_FILE, ModelSpec, load_spec
from services.inference.errors import ModelNotFound, ModelSpecError, VersionNotFound

log = logging.getLogger(__name__)


def version_key(version: str) -> tuple[int, str]:
    """Sort key: numeric value first, so "10" sorts after "9"."""
    return (int(version), version) if version.isdigit() else (-1, version)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One version of one model: its validated spec and its directory. Immutable."""

    spec: ModelSpec
    path: Path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def key(self) -> tuple[str, str]:
        return (self.spec.name, self.spec.version)

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    def __str__(self) -> str:
        return f"{self.spec.name}:{self.spec.version}"


def scan_repository(root: Path) -> list[ModelVersion]:
    """Find and validate every model version under `root` (blocking file I/O).

    Raises ModelSpecError when `root` is not a directory, a spec is invalid, or a
    spec's name/version disagree with its directories.
    """
    if not root.is_dir():
        raise ModelSpecError(f"model repository {root} is not a directory")
    found: list[ModelVersion] = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
            spec_path = version_dir / SPEC_FILE
            if not spec_path.is_file():
                log.warning("skipping %s: no %s", version_dir, SPEC_FILE)
                continue
            spec = load_spec(spec_path)
            if spec.name != model_dir.name or spec.version != version_dir.name:
                raise ModelSpecError(
                    f"{spec_path}: spec says {spec.name}:{spec.version} but lives in "
                    f"{model_dir.name}/{version_dir.name}"
                )
            if not (version_dir / ONNX_FILE).is_file():
                raise ModelSpecError(f"{spec_path}: {ONNX_FILE} is missing next to the spec")
            found.append(ModelVersion(spec=spec, path=version_dir))
    return found


class ModelRegistry:
    """Model name -> versions, with numeric version ordering. Immutable; thread-safe to read."""

    def __init__(self, versions: Iterable[ModelVersion]) -> None:
        by_name: dict[str, dict[str, ModelVersion]] = {}
        for item in versions:
            slot = by_name.setdefault(item.name, {})
            if item.version in slot:
                raise ModelSpecError(f"model {item} registered twice")
            slot[item.version] = item
        self._models = {
            name: dict(sorted(slot.items(), key=lambda kv: version_key(kv[0])))
            for name, slot in sorted(by_name.items())
        }

    @classmethod
    def from_directory(cls, root: Path) -> ModelRegistry:
        return cls(scan_repository(root))

    def names(self) -> list[str]:
        return list(self._models)

    def versions(self, name: str) -> list[str]:
        """Versions of `name`, ascending; the last one is the default."""
        return list(self._slot(name))

    def all(self) -> list[ModelVersion]:
        return [item for slot in self._models.values() for item in slot.values()]

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The requested version, or the default (highest) one when `version` is ""."""
        slot = self._slot(name)
        if not version:
            return next(reversed(slot.values()))
        try:
            return slot[version]
        except KeyError:
            raise VersionNotFound(f"model {name!r} has no version {version!r} (available: {', '.join(slot)})") from None

    def _slot(self, name: str) -> dict[str, ModelVersion]:
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFound(f"unknown model {name!r}") from None

    def __len__(self) -> int:
        return sum(len(slot) for slot in self._models.values())
