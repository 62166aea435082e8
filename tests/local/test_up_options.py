"""`predmesh up`'s options: the whole mesh on by default, the background tier only when asked."""

from __future__ import annotations

from predmesh.cli import build_parser
from predmesh.cli.mesh import up_options


def test_background_tier_is_off_unless_asked() -> None:
    plain = up_options(build_parser().parse_args(["up"]))
    tiered = up_options(build_parser().parse_args(["up", "--background-tier"]))
    assert (plain.background_tier, tiered.background_tier) == (False, True)
    assert plain.with_batch_jobs and plain.with_async_queue  # what the tier would take over runs either way
