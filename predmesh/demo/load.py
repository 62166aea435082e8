"""Load the demo's synthetic users into Redis (tooling: `predmesh up`, `predmesh features load --demo N`).

    python -m predmesh.demo.load --redis-url URL --demo 1000

Uses the features service's loader with the demo registry (`predmesh/demo/features.yaml`).
Blocking; call it in a thread from async code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from predmesh.demo import FEATURE_REGISTRY, synth
from services.features.loader import LoadReport, load_frame


def load_demo(redis_url: str, n: int = 1000) -> LoadReport:
    """Write the demo's synthetic users (`synth.users(n)`) as `user` entities, and its merchants
    (`synth.merchants()`, read by fraud:3) as `merchant` entities; returns the users' report."""
    load_frame(synth.merchants(), "merchant", redis_url, FEATURE_REGISTRY)
    return load_frame(synth.users(n), "user", redis_url, FEATURE_REGISTRY)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; 0 on success, 1 when the load failed."""
    parser = argparse.ArgumentParser(prog="predmesh features load --demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("PREDMESH_FEATURES_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis URL (default: $PREDMESH_FEATURES_REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    parser.add_argument("--demo", type=int, metavar="N", required=True, help="number of synthetic demo users")
    args = parser.parse_args(argv)
    try:
        report = load_demo(args.redis_url, args.demo)
    except Exception as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
