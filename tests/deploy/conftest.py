"""The Helm fixtures (real helm binary, cached renders) for the image/chart agreement tests."""

from tests.helm.conftest import helm, helm_run  # noqa: F401
