"""Model versions on disk and the in-memory registry of them.

Repository layout (Triton-compatible; Triton's own `<name>/config.pbtxt` and
`<name>/configs/` may sit beside the version directories and are ignored here)::

    <repo>/<name>/<version>/model.onnx
    <repo>/<name>/<version>/model.yaml     # predmesh spec, see predmesh/models/spec.py

Version directories are non-negative integers, compared numerically ("10" > "9");
the highest is the default. A `<name>/<version>/` without `model.yaml` is skipped with
a warning (e.g. a Triton-only model); an invalid spec fails the whole scan. An
ensemble version (`kind: ensemble`) has no model.onnx.

Every `ModelVersion` carries a `revision` (sizes and mtimes of its files): a version
directory replaced in place (same number, new model.onnx) is a different revision, so
backends can hold the old and the new one side by side while the old one drains.

`ModelRegistry` is an immutable snapshot, safe to read from any thread; hot reload
(predmesh/models/lifecycle.py) builds a new one and swaps the reference. Its constructor checks
ensembles: members registered, no cycles, same task, same class labels; errors name
the ensemble's model.yaml.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from predmesh.models.errors import ModelNotFound, ModelSpecError, VersionNotFound
from predmesh.models.spec import ONNX_FILE, SPEC_FILE, EnsembleMember, ModelSpec, load_spec

log = logging.getLogger(__name__)


def version_key(version: str) -> tuple[int, str]:
    """Sort key: numeric value first, so "10" sorts after "9"."""
    return (int(version), version) if version.isdigit() else (-1, version)


VersionKey = tuple[str, str, str]  # (name, version, revision)


def file_revision(version_dir: Path) -> str:
    """Sizes and mtimes of a version's model.yaml and model.onnx (blocking stat calls)."""
    parts = []
    for name in (SPEC_FILE, ONNX_FILE):
        try:
            st = (version_dir / name).stat()
        except OSError:
            parts.append("-")
            continue
        parts.append(f"{st.st_size}.{st.st_mtime_ns}")
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One version of one model: its validated spec, its directory and file revision. Immutable."""

    spec: ModelSpec
    path: Path
    revision: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def key(self) -> VersionKey:
        """Identity of this loaded revision (backends key their state by it)."""
        return (self.spec.name, self.spec.version, self.revision)

    @property
    def ref(self) -> tuple[str, str]:
        """(name, version), what requests address."""
        return (self.spec.name, self.spec.version)

    @property
    def is_ensemble(self) -> bool:
        return self.spec.is_ensemble

    @property
    def spec_path(self) -> Path:
        return self.path / SPEC_FILE

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
            if not spec.is_ensemble and not (version_dir / ONNX_FILE).is_file():
                raise ModelSpecError(f"{spec_path}: {ONNX_FILE} is missing next to the spec")
            found.append(ModelVersion(spec=spec, path=version_dir, revision=file_revision(version_dir)))
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
        self._features: dict[tuple[str, str], tuple[str, ...]] = {}
        for item in self.all():
            if item.is_ensemble:
                self._check_ensemble(item, ())
        for item in self.all():
            self._features[item.ref] = self._union(item)

    # -- ensembles -----------------------------------------------------------
    def _member(self, ensemble: ModelVersion, member: EnsembleMember) -> ModelVersion:
        found = self._models.get(member.model, {}).get(member.version)
        if found is None:
            raise ModelSpecError(
                f"{ensemble.spec_path}: ensemble member {member.model}:{member.version} is not in the repository"
            )
        return found

    def _check_ensemble(self, item: ModelVersion, path: tuple[tuple[str, str], ...]) -> None:
        if item.ref in path:
            cycle = " -> ".join(f"{n}:{v}" for n, v in (*path, item.ref))
            raise ModelSpecError(f"{self._get(path[0]).spec_path}: ensemble cycle {cycle}")
        spec = item.spec
        assert spec.ensemble is not None
        for member in spec.ensemble.members:
            mv = self._member(item, member)
            if mv.spec.task != spec.task:
                raise ModelSpecError(f"{item.spec_path}: member {mv} is a {mv.spec.task}, the ensemble a {spec.task}")
            if set(mv.spec.class_labels) != set(spec.class_labels):
                raise ModelSpecError(
                    f"{item.spec_path}: member {mv} has class_labels {list(mv.spec.class_labels)}, "
                    f"incompatible with the ensemble's {list(spec.class_labels)}"
                )
            if mv.is_ensemble:
                self._check_ensemble(mv, (*path, item.ref))

    def _get(self, ref: tuple[str, str]) -> ModelVersion:
        return self._models[ref[0]][ref[1]]

    def _union(self, item: ModelVersion) -> tuple[str, ...]:
        if not item.is_ensemble:
            return item.spec.feature_names
        seen: dict[str, None] = {}
        for mv in self.members(item):
            seen.update(dict.fromkeys(self._union(mv)))
        return tuple(seen)

    def members(self, item: ModelVersion) -> list[ModelVersion]:
        """The member versions of an ensemble, in spec order ([] for a plain model)."""
        if item.spec.ensemble is None:
            return []
        return [self._get(m.key) for m in item.spec.ensemble.members]

    def closure(self, item: ModelVersion) -> list[ModelVersion]:
        """`item` and, for an ensemble, every version it runs (transitively), without repeats."""
        out: dict[VersionKey, ModelVersion] = {item.key: item}
        for mv in self.members(item):
            for sub in self.closure(mv):
                out.setdefault(sub.key, sub)
        return list(out.values())

    def features(self, item: ModelVersion) -> tuple[str, ...]:
        """Features a request for `item` must carry: its inputs, or for an ensemble the
        union of its members' (first-seen order)."""
        return self._features.get(item.ref) or self._union(item)

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

    def find(self, name: str, version: str) -> ModelVersion | None:
        """That exact version, or None."""
        return self._models.get(name, {}).get(version)

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
