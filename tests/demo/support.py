"""The demo models trained once per test session (fixture `demo_models` in tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from predmesh.demo.train import TrainedModel


@dataclass(frozen=True)
class DemoModels:
    repo: Path
    trained: dict[str, TrainedModel]  # "fraud:1" -> trained model
    holdout: pd.DataFrame


def train_demo_models(repo: Path) -> DemoModels:
    from predmesh.demo.train import demo_dataset, train_models, write_model

    trained = {}
    for item in train_models(seed=0):
        write_model(repo, item)
        trained[f"{item.spec.name}:{item.spec.version}"] = item
    return DemoModels(repo=repo, trained=trained, holdout=demo_dataset(seed=0)[1])
