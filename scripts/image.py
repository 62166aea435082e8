"""Build the predmesh container image with buildah, then smoke-test it (what `./dev image` runs).

Steps (each prints one line):
  1. tools: buildah and debootstrap (Debian packages; installed with apt-get when missing, as root)
  2. base: the official slim CPython image (Containerfile's BASE); where it cannot be pulled, a local
     Debian bookworm base (debootstrap --variant=minbase, python3 + python3-venv) committed with
     `buildah from scratch` as localhost/predmesh-base:bookworm, reused by later builds
  3. demo models trained into build/image/models (predmesh.demo.train) (they become /app/models in the image)
  4. `buildah bud --isolation chroot --network host --layers` of Containerfile, tagged
     localhost/predmesh:<version> (VERSION/REVISION labels from pyproject.toml and git)
  5. CycloneDX SBOM of the locked runtime dependencies: build/image/sbom.cdx.json
  6. size, user and digest: build/image/image.json
  7. smoke test (scripts/image_smoke.py): the services run from the image, one Predict via Envoy

Usage: python scripts/image.py [--tag TAG] [--base REF] [--no-smoke]
Env: PREDMESH_IMAGE_BASE (skip the pull, use this base), PREDMESH_IMAGE_CACHE (debootstrap cache dir),
     PREDMESH_DEBIAN_MIRROR.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "image"
IMAGE = "localhost/predmesh"
OFFICIAL_BASE = "docker.io/library/python:3.11-slim-bookworm"
LOCAL_BASE = "localhost/predmesh-base:bookworm"
CACHE = Path(os.environ.get("PREDMESH_IMAGE_CACHE", "/var/cache/predmesh-image"))
MIRROR = os.environ.get("PREDMESH_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
UID = 10001


def say(msg: str) -> None:
    print(f"image: {msg}", flush=True)


def run(cmd: Sequence[str], check: bool = True, capture: bool = False, timeout: float | None = None) -> str:
    proc = subprocess.run(list(cmd), check=False, text=True, capture_output=capture, timeout=timeout)
    if check and proc.returncode != 0:
        detail = f"\n{proc.stderr.strip()}" if capture else ""
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed with exit code {proc.returncode}{detail}")
    return proc.stdout if capture else ""


def buildah_available() -> bool:
    return shutil.which("buildah") is not None


def ensure_tools() -> None:
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"image: {', '.join(missing)} missing; install them (apt-get install buildah debootstrap)")
    say(f"installing {' '.join(missing)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "buildah", "debootstrap"]
    subprocess.run(install, check=True, env=env)


def image_exists(ref: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True).returncode == 0


def resolve_base(explicit: str | None = None) -> str:
    """The base image reference: explicit, the official one if pullable, else the local Debian base."""
    base = explicit or os.environ.get("PREDMESH_IMAGE_BASE")
    if base:
        return base
    try:
        pull = ["buildah", "pull", "--quiet", OFFICIAL_BASE]
        pulled = subprocess.run(pull, capture_output=True, text=True, timeout=300)
        if pulled.returncode == 0:
            return OFFICIAL_BASE
        reason = (pulled.stderr.strip().splitlines() or ["unknown error"])[-1]
    except subprocess.TimeoutExpired:
        reason = "timed out"
    say(f"cannot pull {OFFICIAL_BASE} ({reason[:160]}); using the local Debian base {LOCAL_BASE}")
    if not image_exists(LOCAL_BASE):
        bootstrap_base()
    return LOCAL_BASE


def bootstrap_base() -> None:
    """Debian bookworm minbase with python3 + python3-venv, committed as LOCAL_BASE."""
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = CACHE / "rootfs"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        partial = CACHE / f"rootfs-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        say(f"debootstrap bookworm into {rootfs} (a few minutes, once)")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(partial),
                MIRROR,
            ]
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (partial / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        shutil.rmtree(rootfs, ignore_errors=True)
        partial.rename(rootfs)
    ctr = run(["buildah", "from", "scratch"], capture=True).strip()
    try:
        mnt = run(["buildah", "mount", ctr], capture=True).strip()
        run(["cp", "-a", f"{rootfs}/.", mnt])
        run(
            [
                "buildah",
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "python3",
                "--label",
                "org.opencontainers.image.base.name=debian:bookworm",
                ctr,
            ]
        )
        run(["buildah", "commit", "--quiet", ctr, LOCAL_BASE], capture=True)
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
    say(f"committed {LOCAL_BASE}")


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def git_revision() -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    rev = proc.stdout.strip() if proc.returncode == 0 else "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return f"{rev}-dirty" if dirty and rev != "unknown" else rev


def train_models(repo: Path) -> None:
    from predmesh.demo.train import ensure_demo_models

    ensure_demo_models(repo)


def build(base: str, tag: str) -> None:
    models = (BUILD_DIR / "models").relative_to(ROOT)
    cmd = [
        "buildah",
        "bud",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--layers",
        "--pull-never",
        "--file",
        "Containerfile",
        "--tag",
        tag,
        "--build-arg",
        f"BASE={base}",
        "--build-arg",
        f"VERSION={project_version()}",
        "--build-arg",
        f"REVISION={git_revision()}",
        "--build-arg",
        f"MODELS={models}",
    ]
    if CA_BUNDLE.is_file():
        cmd += ["--secret", f"id=cacert,src={CA_BUNDLE}"]
    subprocess.run([*cmd, str(ROOT)], check=True, cwd=ROOT)


def write_sbom(out: Path) -> None:
    """CycloneDX (JSON) of the runtime lock: exactly what the image's virtualenv was installed from."""
    exe = shutil.which("cyclonedx-py") or str(Path(sys.executable).parent / "cyclonedx-py")
    run(
        [
            exe,
            "requirements",
            str(ROOT / "requirements" / "runtime.txt"),
            "--pyproject",
            str(ROOT / "pyproject.toml"),
            "--output-reproducible",
            "--of",
            "JSON",
            "-o",
            str(out),
        ]
    )


def describe(tag: str) -> dict[str, object]:
    info = json.loads(run(["buildah", "inspect", "--type", "image", tag], capture=True))
    config = info.get("OCIv1", {}).get("config", {})
    return {
        "image": tag,
        "id": info.get("FromImageID", ""),
        "digest": info.get("FromImageDigest", ""),
        "user": config.get("User", ""),
        "size": image_size(tag),
        "labels": config.get("Labels", {}),
    }


def image_size(tag: str) -> str:
    """Uncompressed size as buildah reports it (e.g. "722 MB")."""
    entries = json.loads(run(["buildah", "images", "--json", tag], capture=True) or "[]")
    return str(entries[0]["size"]) if entries else "unknown"


@contextlib.contextmanager
def mounted(tag: str) -> Iterator[Path]:
    """The image's root filesystem, read through a throwaway working container."""
    ctr = run(["buildah", "from", "--pull-never", "--quiet", tag], capture=True).strip()
    try:
        yield Path(run(["buildah", "mount", ctr], capture=True).strip())
    finally:
        subprocess.run(["buildah", "umount", ctr], capture_output=True)
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default=f"{IMAGE}:{project_version()}")
    parser.add_argument("--base", default=None, help="base image (default: official, else local Debian base)")
    parser.add_argument("--no-smoke", action="store_true", help="build only")
    args = parser.parse_args(argv)
    started = time.monotonic()
    ensure_tools()
    base = resolve_base(args.base)
    say(f"base {base}")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    train_models(BUILD_DIR / "models")
    build(base, args.tag)
    write_sbom(BUILD_DIR / "sbom.cdx.json")
    info = describe(args.tag)
    (BUILD_DIR / "image.json").write_text(json.dumps(info, indent=2) + "\n")
    say(
        f"built {args.tag} in {time.monotonic() - started:.0f}s: size {info['size']}, user {info['user']}, "
        f"digest {info['digest']}, SBOM build/image/sbom.cdx.json"
    )
    if args.no_smoke:
        return 0
    sys.path.insert(0, str(ROOT / "scripts"))
    from image_smoke import smoke

    return smoke(args.tag)


if __name__ == "__main__":
    sys.exit(main())
