from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from predmesh.local.procs import free_port, port_open, wait_until
from predmesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference.app import InferenceApp
from services.inference.settings import InferenceSettings

from .conftest import DemoModels

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_settings_read_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PREDMESH_INFERENCE_MODEL_REPOSITORY", str(tmp_path))
    monkeypatch.setenv("PREDMESH_INFERENCE_MAX_ROWS", "7")
    monkeypatch.setenv("PREDMESH_INFERENCE_ORT_INTRA_OP_THREADS", "3")
    monkeypatch.setenv("PREDMESH_INFERENCE_PORT", "5055")
    settings = InferenceSettings()
    assert (settings.model_repository, settings.max_rows, settings.ort_intra_op_threads, settings.port) == (
        tmp_path,
        7,
        3,
        5055,
    )
    for name, field in InferenceSettings.model_fields.items():
        assert field.description, f"{name} has no description"


def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = InferenceApp(InferenceSettings()).port


async def test_app_stop_refuses_new_calls(demo_models: DemoModels) -> None:
    app = InferenceApp(InferenceSettings(model_repository=demo_models.repo, grace_s=0.2))
    await app.start()
    address = app.address
    assert app.port > 0
    await app.stop()
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await inference_pb2_grpc.InferenceServiceStub(channel).ListModels(
                inference_pb2.ListModelsRequest(), timeout=1.0
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_python_m_runs_until_sigterm(demo_models: DemoModels, tmp_path: Path) -> None:
    port = free_port()
    env = dict(
        os.environ,
        PREDMESH_INFERENCE_MODEL_REPOSITORY=str(demo_models.repo),
        PREDMESH_INFERENCE_PORT=str(port),
        PREDMESH_INFERENCE_GRACE_S="0.5",
    )
    log_path = tmp_path / "inference.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.inference.app"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: port_open("127.0.0.1", port), 30, "inference service", proc)
            time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text()
    assert "serving fraud:1, fraud:2, fraud:3, fraud_ctx:1, fraud_ens:1, fraud_nn:1" in text
    assert "inference service stopped" in text
