"""Regenerate predmesh/v1/*_pb2.py, *_pb2_grpc.py and *.pyi from protos/.

Usage: python scripts/genproto.py [--check]
With --check, exit 1 when the committed generated code differs from a fresh generation.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_PACKAGE = ROOT / "predmesh" / "v1"


def generate(out_root: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc  # dev dependency: grpcio-tools

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "predmesh" / "v1").glob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_root / "predmesh" / "v1" / "__init__.py").write_text('"""Generated from protos/predmesh/v1. Do not edit."""\n')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_root = Path(tmp)
        generate(tmp_root)
        fresh = tmp_root / "predmesh" / "v1"
        if args.check:
            names = sorted(p.name for p in fresh.iterdir())
            current = sorted(p.name for p in OUT_PACKAGE.iterdir() if p.is_file()) if OUT_PACKAGE.exists() else []
            stale = names != current or any(not filecmp.cmp(fresh / n, OUT_PACKAGE / n, shallow=False) for n in names)
            if stale:
                print("generated protobuf code is stale: run `python scripts/genproto.py`", file=sys.stderr)
                return 1
            print("generated protobuf code is up to date")
            return 0
        if OUT_PACKAGE.exists():
            shutil.rmtree(OUT_PACKAGE)
        shutil.copytree(fresh, OUT_PACKAGE)
        print(f"generated {len(list(OUT_PACKAGE.iterdir()))} files into {OUT_PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
