"""Demo data for the local mesh: the feature registry and a synthetic fraud data set."""

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
FEATURE_REGISTRY = DEMO_DIR / "features.yaml"
DEMO_ROUTING = DEMO_DIR / "routing.yaml"
