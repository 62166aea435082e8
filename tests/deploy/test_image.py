"""The chart runs what the Containerfile builds.

Static (always): every `python -m <module>` the chart renders (every value set, every optional
component on) is a module of this repository that the Containerfile copies into the image; the
chart's default user, read-only root filesystem and image model path match the Containerfile.

Image (root + buildah + a built image, else skipped with the reason; PREDMESH_REQUIRE_IMAGE=1
turns the skip into a failure, as CI does after `./dev image`): in the image's filesystem every
chart entrypoint resolves with the image's own interpreter, the Triton copy-models init
container's command exists, the config user is 10001, every runtime lock pin is installed at
its locked version, no compiler is present, and the OCI labels are set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_lock import lock
from tests.helm.chart import VALUE_SETS, HelmRun, Manifest, all_pod_specs

ROOT = Path(__file__).resolve().parents[2]
CHART_EXTRA = ["--set", "ortWorker.enabled=true", "--set", "triton.enabled=true", "--set", "monitor.enabled=true"]
IMAGE_REPO = "ghcr.io/predmesh/predmesh"  # values.yaml image.repository (the chart's own image)
IMAGE = os.environ.get("PREDMESH_IMAGE", "")


def _containers(docs: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for name, spec in all_pod_specs(docs):
        for ctr in [*spec.get("initContainers", []), *spec["containers"]]:
            yield name, ctr


@pytest.fixture(scope="module")
def our_containers(helm_run: HelmRun) -> list[tuple[str, Manifest]]:
    """(workload, container) of every render that runs the chart's own image."""
    found: dict[str, tuple[str, Manifest]] = {}
    for files in VALUE_SETS.values():
        for extra in ([], CHART_EXTRA):
            repo = _image_repository(files)
            for name, ctr in _containers(helm_run.template(files, extra)):
                if str(ctr["image"]).startswith(repo):
                    found[json.dumps([name, ctr["name"], ctr.get("command")])] = (name, ctr)
    assert found, "no container of the chart's image rendered"
    return list(found.values())


def _image_repository(files: tuple[str, ...]) -> str:
    import yaml

    repo = IMAGE_REPO
    for name in files:
        values = yaml.safe_load((ROOT / "tests" / "helm" / "values" / name).read_text()) or {}
        repo = (values.get("image") or {}).get("repository", repo)
    return str(repo)


def _python_modules(containers: list[tuple[str, Manifest]]) -> set[str]:
    modules = set()
    for name, ctr in containers:
        cmd = list(ctr.get("command") or [])
        if cmd[:1] == ["python"]:
            assert cmd[1:2] == ["-m"] and len(cmd) >= 3, f"{name}/{ctr['name']}: unexpected command {cmd}"
            modules.add(cmd[2])
    return modules


def _copied_top_levels() -> set[str]:
    """Top-level directories the Containerfile copies under /app."""
    text = (ROOT / "Containerfile").read_text()
    return set(re.findall(r"^COPY (\w+) /app/\1$", text, re.M))


def test_every_chart_entrypoint_is_a_module_of_this_repository(our_containers: list[tuple[str, Manifest]]) -> None:
    modules = _python_modules(our_containers)
    assert {
        "services.gateway.app",
        "services.features.app",
        "services.inference.app",
        "services.logger.app",
        "services.controlplane.app",
    } <= modules
    copied = _copied_top_levels()
    for module in sorted(modules):
        path = ROOT.joinpath(*module.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), f"{module}: no such module"
        assert module.split(".")[0] in copied, f"{module}: the Containerfile does not copy {module.split('.')[0]}/"


def test_chart_defaults_match_the_image(helm_run: HelmRun) -> None:
    import yaml

    values = yaml.safe_load((ROOT / "deploy" / "helm" / "predmesh" / "values.yaml").read_text())
    text = (ROOT / "Containerfile").read_text()
    user = re.findall(r"^USER (\S+)$", text, re.M)[-1]
    assert user == f"{values['podSecurityContext']['runAsUser']}:{values['podSecurityContext']['runAsGroup']}"
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert values["image"]["repository"] == IMAGE_REPO
    assert values["modelRepository"]["type"] == "image"
    assert f"COPY ${{MODELS}} {values['modelRepository']['image']['path']}" in text
    # Writable paths of the image are volumes in the chart: /tmp everywhere, the logger journal.
    docs = helm_run.template()
    for name, ctr in _containers(docs):
        if str(ctr["image"]).startswith(IMAGE_REPO) and ctr["name"] != "copy-models":
            assert "/tmp" in {m["mountPath"] for m in ctr.get("volumeMounts", [])}, name
    logger = next(c for n, c in _containers(docs) if c["name"] == "logger")
    assert values["logger"]["journal"]["path"] in {m["mountPath"] for m in logger["volumeMounts"]}
    assert f"mkdir -p {values['logger']['journal']['path']}" in text


def test_triton_reads_models_copied_from_our_image(helm_run: HelmRun) -> None:
    docs = helm_run.template(VALUE_SETS["gpu-image"])
    spec = next(s for n, s in all_pod_specs(docs) if n.endswith("-triton"))
    (init,) = spec["initContainers"]
    assert init["image"].startswith("registry.example.com/ml/predmesh@sha256:")  # digest pinned
    assert init["command"] == ["cp", "-R", "/app/models/.", "/models/"]
    triton = spec["containers"][0]
    assert "--model-repository=/models" in triton["args"]
    mounts = {m["mountPath"]: m for m in triton["volumeMounts"]}
    assert mounts["/models"].get("readOnly") is True and mounts["/models"]["name"] == "models"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["models"]
    assert init["volumeMounts"] == [{"name": "models", "mountPath": "/models"}]


# -- the built image ---------------------------------------------------------------------------


def _image_ref() -> str:
    if IMAGE:
        return IMAGE
    version = lock.load_pyproject()["project"]["version"]
    return f"localhost/predmesh:{version}"


def _stale_reason(ref: str) -> str:
    """Why the built image does not show this tree ("" when it does): an image left on the machine by
    an earlier build is not evidence about the current code (CI rebuilds, then requires it)."""
    inspect = ["buildah", "inspect", "--type", "image", ref]
    config = json.loads(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)["OCIv1"]["config"]
    labels = config.get("Labels") or {}
    built = labels.get("org.opencontainers.image.revision", "")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if head and built.removesuffix("-dirty") != head:
        return f"image {ref} was built from revision {built or 'unknown'}, the tree is at {head} (run ./dev image)"
    return ""


@pytest.fixture(scope="module")
def image() -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """(working container, mounted root filesystem, image config) of the built image."""
    ref = _image_ref()
    reason = ""
    if shutil.which("buildah") is None:
        reason = "buildah is not installed (./dev image installs it)"
    elif os.geteuid() != 0:
        reason = "buildah mount needs root"
    elif subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True).returncode != 0:
        reason = f"image {ref} is not built (run ./dev image)"
    if not reason:
        reason = _stale_reason(ref)
    if reason:
        if os.environ.get("PREDMESH_REQUIRE_IMAGE") == "1":
            pytest.fail(f"PREDMESH_REQUIRE_IMAGE=1 but {reason}")
        pytest.skip(reason)
    config = json.loads(
        subprocess.run(
            ["buildah", "inspect", "--type", "image", ref], capture_output=True, text=True, check=True
        ).stdout
    )["OCIv1"]["config"]
    ctr = subprocess.run(
        ["buildah", "from", "--pull-never", "--quiet", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        mnt = Path(subprocess.run(["buildah", "mount", ctr], capture_output=True, text=True, check=True).stdout.strip())
        yield ctr, mnt, config
    finally:
        subprocess.run(["buildah", "umount", ctr], capture_output=True)
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


def _in_image(ctr: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", "run", "--isolation", "chroot", "--network", "host", "--user", "10001:10001", ctr, "--", *cmd],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_chart_entrypoint_exists_in_the_image(
    image: tuple[str, Path, dict[str, Any]], our_containers: list[tuple[str, Manifest]]
) -> None:
    ctr, mnt, _ = image
    modules = sorted(_python_modules(our_containers))
    probe = (
        "import importlib.util, sys\n"
        "def found(name):\n"
        "    try:\n"
        "        return importlib.util.find_spec(name) is not None\n"
        "    except ImportError:\n"
        "        return False\n"
        "print([m for m in sys.argv[1:] if not found(m)])\n"
    )
    proc = _in_image(ctr, "python", "-c", probe, *modules)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"modules missing in the image: {proc.stdout}"
    for name, c in our_containers:
        binary = (c.get("command") or ["python"])[0]
        if binary != "python":
            assert any((mnt / d / binary).is_file() for d in ("usr/bin", "bin")), f"{name}: no {binary} in the image"


def test_image_user_labels_and_no_compiler(image: tuple[str, Path, dict[str, Any]]) -> None:
    ctr, mnt, config = image
    assert config["User"] == "10001:10001"
    labels = config["Labels"]
    for key in ("source", "version", "revision"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.version"] == lock.load_pyproject()["project"]["version"]
    for compiler in ("gcc", "cc", "g++", "c++", "clang", "make"):
        assert not any((mnt / d / compiler).exists() for d in ("usr/bin", "usr/local/bin")), compiler
    assert not list((mnt / "opt" / "predmesh" / "bin").glob("pip*")), "pip left in the final stage"
    whoami = _in_image(ctr, "python", "-c", "import os; print(os.getuid(), os.getgid())")
    assert whoami.stdout.split() == ["10001", "10001"], whoami.stderr


def test_image_holds_exactly_the_runtime_lock(image: tuple[str, Path, dict[str, Any]]) -> None:
    _, mnt, _ = image
    site = next((mnt / "opt" / "predmesh" / "lib").glob("python3.*/site-packages"))
    installed = {}
    for dist in site.glob("*.dist-info"):
        name, _, version = dist.name[: -len(".dist-info")].partition("-")
        installed[lock.canonicalize_name(name)] = version
    pins = lock.parse_lock((ROOT / "requirements" / "runtime.txt").read_text())
    for pin in pins.values():
        got = installed.get(pin.name)
        assert got == str(pin.version), f"{pin.name}: locked {pin.version}, in the image {got}"
    assert set(installed) == set(pins), f"not from the lock: {sorted(set(installed) - set(pins))}"


# Packages of the optional extras (train, local, dev): the image holds only the runtime lock.
NOT_IN_IMAGE = ("onnx", "sklearn", "xgboost", "skl2onnx", "onnxmltools", "onnxconverter_common", "pytest")

_BLOCK_EXTRAS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (an optional extra, not in the image)")
        return None
sys.meta_path.insert(0, Block())
import {module}
"""


def test_every_chart_entrypoint_imports_without_the_optional_extras(
    our_containers: list[tuple[str, Manifest]],
) -> None:
    """Without building the image: each service module the chart runs imports with the packages of
    the optional extras hidden, as in the image (a module-level `import onnx` broke the inference
    image's start once)."""
    for module in sorted(_python_modules(our_containers)):
        code = _BLOCK_EXTRAS.format(blocked=set(NOT_IN_IMAGE), module=module)
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.returncode == 0, f"{module}: {proc.stderr.strip().splitlines()[-1:]}"
