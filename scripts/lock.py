"""Locked, hashed dependencies compiled from pyproject.toml (requirements/*.txt).

Two locks, both for CPython 3.11 on manylinux x86_64, every pin with its sha256 hashes:
  requirements/runtime.txt   [project] dependencies: what the container image installs
  requirements/dev.txt       plus the train, local and dev extras: what `./dev setup` installs
and requirements/otel-proto.txt, the opentelemetry-proto pin alone (copied from runtime.txt):
xds-protos installs an old opentelemetry/proto over that package's files, so installers
force-reinstall it after the lock (see DESIGN.md, "Packaging trap").

Each lock starts with `# pyproject-sha256: <digest>` of the dependency lists it was compiled
from, so a pyproject.toml change without a relock is detected offline.

Usage:
    python scripts/lock.py            # relock with uv (needs the package index)
    python scripts/lock.py --check    # offline: locks consistent with pyproject.toml
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_36"
# lock name -> extras compiled into it
LOCKS: dict[str, tuple[str, ...]] = {"runtime": (), "dev": ("train", "local", "dev")}
OTEL_PROTO = "opentelemetry-proto"
FINGERPRINT = "# pyproject-sha256: "
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


@dataclass
class Pin:
    name: str
    version: Version
    hashes: list[str] = field(default_factory=list)
    text: str = ""  # the pin's lines as written (requirement, hashes, comments)


def load_pyproject(path: Path = ROOT / "pyproject.toml") -> dict:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def fingerprint(pyproject: dict, extras: tuple[str, ...]) -> str:
    """Digest of what a lock is compiled from: requires-python, dependencies, the chosen extras."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    data = {
        "requires-python": project.get("requires-python", ""),
        "dependencies": sorted(project.get("dependencies", [])),
        "extras": {name: sorted(optional.get(name, [])) for name in extras},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def requirements_of(pyproject: dict, extras: tuple[str, ...]) -> list[Requirement]:
    project = pyproject["project"]
    reqs = [Requirement(r) for r in project.get("dependencies", [])]
    for name in extras:
        reqs += [Requirement(r) for r in project.get("optional-dependencies", {}).get(name, [])]
    return reqs


def parse_lock(text: str) -> dict[str, Pin]:
    """Pins of a `--generate-hashes` requirements file, by canonical name."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            current = Pin(canonicalize_name(match.group(1)), Version(match.group(3)), text=line)
            pins[current.name] = current
            continue
        if current is not None and line.startswith((" ", "\t")):
            current.text += "\n" + line
            for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
                current.hashes.append(digest)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"unexpected line in lock: {line!r}")
    return pins


def lock_path(name: str) -> Path:
    return REQUIREMENTS / f"{name}.txt"


def check(root: Path = ROOT) -> list[str]:
    """Problems that make the locks disagree with pyproject.toml (empty = consistent)."""
    problems: list[str] = []
    pyproject = load_pyproject(root / "pyproject.toml")
    marker_env = {"python_version": PYTHON_VERSION, "sys_platform": "linux", "platform_machine": "x86_64"}
    locks: dict[str, dict[str, Pin]] = {}
    for name, extras in LOCKS.items():
        path = root / "requirements" / f"{name}.txt"
        if not path.is_file():
            problems.append(f"{path.name}: missing (run python scripts/lock.py)")
            continue
        text = path.read_text()
        want = fingerprint(pyproject, extras)
        if f"{FINGERPRINT}{want}" not in text.splitlines()[:3]:
            problems.append(f"{path.name}: compiled from another pyproject.toml (run python scripts/lock.py)")
        pins = locks[name] = parse_lock(text)
        for pin in pins.values():
            if not pin.hashes:
                problems.append(f"{path.name}: {pin.name}=={pin.version} has no hash")
        for req in requirements_of(pyproject, extras):
            if req.marker is not None and not req.marker.evaluate(marker_env):
                continue
            locked = pins.get(canonicalize_name(req.name))
            if locked is None:
                problems.append(f"{path.name}: {req} is not locked")
            elif not req.specifier.contains(locked.version, prereleases=True):
                problems.append(f"{path.name}: {locked.name}=={locked.version} does not satisfy {req}")
    if "runtime" in locks and "dev" in locks:
        for pin in locks["runtime"].values():
            dev = locks["dev"].get(pin.name)
            if dev is None or dev.version != pin.version:
                problems.append(f"dev.txt: {pin.name} differs from runtime.txt ({pin.version})")
        otel = root / "requirements" / "otel-proto.txt"
        runtime_otel = locks["runtime"].get(OTEL_PROTO)
        if runtime_otel is None:
            problems.append(f"runtime.txt: {OTEL_PROTO} is not locked")
        else:
            pinned = parse_lock(otel.read_text()).get(OTEL_PROTO) if otel.is_file() else None
            if pinned is None:
                problems.append("otel-proto.txt: missing or without the opentelemetry-proto pin")
            elif (pinned.version, pinned.hashes) != (runtime_otel.version, runtime_otel.hashes):
                problems.append("otel-proto.txt: differs from runtime.txt's opentelemetry-proto pin")
    return problems


def compile_locks(uv: str) -> None:
    pyproject = load_pyproject()
    REQUIREMENTS.mkdir(exist_ok=True)
    runtime_text = ""
    for name, extras in LOCKS.items():
        out = lock_path(name)
        cmd = [uv, "pip", "compile", "pyproject.toml", "--quiet", "--generate-hashes", "--no-header"]
        cmd += ["--python-version", PYTHON_VERSION, "--python-platform", PLATFORM]
        for extra in extras:
            cmd += ["--extra", extra]
        if name != "runtime":
            # The dev lock keeps every runtime pin, so the image and the tests run the same versions.
            cmd += ["--constraint", "requirements/runtime.txt"]
        body = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
        header = (
            f"{FINGERPRINT}{fingerprint(pyproject, extras)}\n"
            f"# Generated by `python scripts/lock.py` (uv pip compile, CPython {PYTHON_VERSION}, {PLATFORM}); "
            "do not edit.\n"
        )
        out.write_text(header + body)
        if name == "runtime":
            runtime_text = body
    otel = parse_lock(runtime_text)[OTEL_PROTO]
    lock_path("otel-proto").write_text(
        "# opentelemetry-proto alone, reinstalled after xds-protos (scripts/lock.py); do not edit.\n"
        + "\n".join(line for line in otel.text.splitlines() if not line.strip().startswith("#"))
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check the locks against pyproject.toml")
    args = parser.parse_args(argv)
    if not args.check:
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        compile_locks(uv)
    problems = check()
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
