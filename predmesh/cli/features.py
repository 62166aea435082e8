"""`predmesh features load`: the features service's loader (demo registry unless --registry)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def cmd_features_load(rest: Sequence[str]) -> int:
    """The service's loader, with the demo registry unless `--registry` is given; `--demo N` loads demo users."""
    args = list(rest)
    if any(a == "--demo" or a.startswith("--demo=") for a in args):
        from predmesh.demo.load import main as demo_main

        return demo_main(args)
    from predmesh.demo import FEATURE_REGISTRY
    from services.features.loader import main as loader_main

    if not any(a == "--registry" or a.startswith("--registry=") for a in args):
        args = ["--registry", str(FEATURE_REGISTRY), *args]
    return loader_main(args)


def add_parser(sub: Any) -> None:
    features = sub.add_parser("features", help="feature store tools")
    features.add_argument("action", choices=["load"])
    features.add_argument("rest", nargs=argparse.REMAINDER)
    features.set_defaults(func=lambda args: cmd_features_load(args.rest))
