"""ORT worker tests reuse the inference demo models (trained once per session)."""

from tests.inference.conftest import demo_models

__all__ = ["demo_models"]
