"""Allowed roots of batch job files (core/batch_paths.py): inside a root or PERMISSION_DENIED."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.gateway.core.batch_paths import PathPolicy
from services.gateway.errors import InvalidArgument, PermissionDenied


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "batch"
    (path / "sub").mkdir(parents=True)
    return path


def test_local_paths_inside_a_root_are_resolved(root: Path) -> None:
    policy = PathPolicy([str(root)])
    assert policy.check(str(root / "sub" / "in.parquet"), "input") == str(root / "sub" / "in.parquet")
    assert policy.check(f"file://{root}/in.csv", "input") == str(root / "in.csv")
    assert policy.check(str(root / "sub" / ".." / "x.parquet"), "input") == str(root / "x.parquet")


@pytest.mark.parametrize(
    "location",
    ["/etc/passwd", "ROOT/../x.parquet", "ROOT-other/x.parquet", "file://otherhost/ROOT/x.parquet", "LINK/x.parquet"],
)
def test_local_paths_outside_every_root_are_denied(root: Path, location: str) -> None:
    (root.parent / "batch-other").mkdir()
    os.symlink("/tmp", root / "link")  # a symlink inside the root pointing out of it
    location = location.replace("ROOT", str(root)).replace("LINK", str(root / "link"))
    with pytest.raises(PermissionDenied) as err:
        PathPolicy([str(root)]).check(location, "input")
    assert str(root) not in err.value.message.replace(location, "")  # the roots are never named


@pytest.mark.parametrize(
    ("location", "allowed"),
    [
        ("s3://bucket/jobs/in.parquet", True),
        ("s3://bucket/jobs/deep/in.parquet", True),
        ("s3://bucket/jobs-x/in.parquet", False),
        ("s3://bucket/jobs/../secret.parquet", False),
        ("s3://bucket/jobs/./in.parquet", False),
        ("s3://bucket/jobs/in.parquet?versionId=1", False),
        ("s3://other/jobs/in.parquet", False),
        ("gs://bucket/jobs/in.parquet", False),
        ("s3://bucket/jobs/", False),
    ],
)
def test_urls_need_a_url_root_prefix(location: str, allowed: bool) -> None:
    policy = PathPolicy(["s3://bucket/jobs"])
    if allowed:
        assert policy.check(location, "input") == location
    else:
        with pytest.raises(PermissionDenied):
            policy.check(location, "input")


def test_no_roots_allow_nothing_and_bad_locations_are_invalid(root: Path) -> None:
    assert not PathPolicy([]).enabled
    with pytest.raises(PermissionDenied):
        PathPolicy([]).check(str(root / "in.parquet"), "input")
    with pytest.raises(InvalidArgument):
        PathPolicy([str(root)]).check("relative/in.parquet", "input")
    with pytest.raises(InvalidArgument):
        PathPolicy([str(root)]).check("", "output")
    with pytest.raises(ValueError, match="absolute"):
        PathPolicy(["relative/root"])
