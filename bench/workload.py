"""The benchmark's data: the same demo users and transactions for every system.

Every system under test gets the same requests: transactions of the demo users that
`LocalMesh` (and `services.features.loader.load_demo`) writes to Redis, drawn with a
fixed seed. Systems that take a ready tensor (MLServer, Triton) get the matrix that
predmesh's own `Preprocessor` builds from the same rows, so scores match exactly.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from predmesh.demo import synth

DEMO_USERS = 1000
STORE_FEATURES = list(synth.STORE_FEATURES)
REQUEST_FEATURES = list(synth.REQUEST_FEATURES)
ALL_FEATURES = list(synth.ALL_FEATURES)


@cache
def transactions(n: int = 2048, seed: int = 5) -> tuple[dict[str, Any], ...]:
    """``n`` transactions (entity_id + all features, plain Python scalars) of the demo users."""
    frame = synth.transactions(synth.users(DEMO_USERS), n=n, seed=seed)
    rows = []
    for record in frame[["entity_id", *ALL_FEATURES]].to_dict("records"):
        row: dict[str, Any] = {}
        for key, value in record.items():
            row[key] = value.item() if isinstance(value, np.generic) else value
        rows.append(row)
    return tuple(rows)


def model_dir(repo: Path, model: str, version: str) -> Path:
    return Path(repo) / model / version


def model_matrix(repo: Path, model: str, version: str, n: int = 2048) -> np.ndarray:
    """The float32 input matrix predmesh's preprocessor builds for ``transactions(n)``."""
    from predmesh.models.preprocess import Preprocessor
    from predmesh.models.spec import load_spec

    spec = load_spec(model_dir(repo, model, version) / "model.yaml")
    rows = transactions(n)
    columns = {name: [row[name] for row in rows] for name in ALL_FEATURES}
    return Preprocessor(spec).transform_columns(columns, len(rows))
