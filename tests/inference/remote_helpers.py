"""Shared helpers for the real ORT-worker and real-Triton tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd

from predmesh.demo import synth
from predmesh.demo.train import frame_columns
from predmesh.models.preprocess import Preprocessor
from services.inference.app import InferenceApp
from services.inference.triton.layout import write_triton_layout

from .conftest import DemoModels, make_settings

NAMES = list(synth.ALL_FEATURES)


def layout_repo(demo: DemoModels, target: Path) -> Path:
    """A copy of the demo repository with the Triton configs and model.py files."""
    shutil.copytree(demo.repo, target)
    write_triton_layout(target)
    return target


def reference_scores(demo: DemoModels, key: str, frame: pd.DataFrame) -> np.ndarray:
    """ONNX Runtime in this process on the Preprocessor matrix: the expected scores."""
    spec = demo.trained[key].spec
    matrix = Preprocessor(spec).transform_columns(frame_columns(frame), len(frame))
    session = ort.InferenceSession(
        str(demo.repo / spec.name / spec.version / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    out: np.ndarray = session.run([spec.onnx.output], {spec.onnx.input: matrix})[0]
    return out


def frame_rows(frame: pd.DataFrame) -> list[list[Any]]:
    return [list(r) for r in frame[NAMES].itertuples(index=False, name=None)]


async def infer_scores(app: InferenceApp, key: str, frame: pd.DataFrame, **kw: Any) -> np.ndarray:
    assert app.core is not None
    name, version = key.split(":")
    _, predictions = await app.core.infer(name, version, NAMES, frame_rows(frame), **kw)
    return np.array([p.scores for p in predictions])


async def started_app(repo: Path, **overrides: Any) -> InferenceApp:
    app = InferenceApp(make_settings(repo, **overrides))
    await app.start()
    return app
