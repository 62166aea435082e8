"""Local execution backends of the inference orchestrator as managed processes.

- `TritonServer`: the real tritonserver 2.x binary shipped in the `nvidia-pytriton`
  wheel, run directly on a model repository with `--model-config-name=cpu_local`
  (python backend running ONNX Runtime; see services/inference/triton/layout.py).
  It builds a backend dir holding libtriton_python.so, triton_python_backend_utils.py
  and the python-backend stub for our interpreter's Python version, puts our
  interpreter's LIBDIR on LD_LIBRARY_PATH and our venv's bin first on PATH (the stub
  imports numpy/onnxruntime from the first python3). Ready when the KServe
  ServerReady RPC says so (~2 s).
- `OrtWorker`: `python -m services.ortworker.app`, ready on gRPC health.

Both are `ManagedProcess`es: used from one thread; `stop()` is idempotent.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from predmesh.local.procs import ManagedProcess, PythonService, free_port, probe_channel

CPU_LOCAL = "cpu_local"
REPO_ROOT = Path(__file__).resolve().parents[2]


def pytriton_dir() -> Path:
    """The `tritonserver/` directory inside the installed nvidia-pytriton package."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nvidia-pytriton is not installed (it ships the tritonserver binary)")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise FileNotFoundError(f"no tritonserver binary under {root}")
    return root


def grpc_server_ready(address: str, timeout: float = 0.5, tls: Any = None) -> bool:
    """True when the KServe v2 server at `address` answers ServerReady with ready=true (mTLS with `tls`)."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with probe_channel(address, tls) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        return bool(stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=timeout).ready)


class TritonServer(ManagedProcess):
    """tritonserver on loopback ports serving `model_repository` (see module docstring)."""

    name = "triton"
    ready_timeout_s = 60.0

    def __init__(
        self,
        model_repository: Path,
        model_config_name: str | None = CPU_LOCAL,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        tls: Any = None,
        probe_tls: Any = None,
        admin_key: str = "",
    ) -> None:
        """`tls`: TlsFiles of Triton's own certificate (gRPC mutual TLS, HTTP endpoint off);
        `probe_tls`: the client certificate the readiness check presents; `admin_key`: restrict model
        control, config, shared memory, trace and logging RPCs to callers sending it
        (--grpc-restricted-protocol, header `triton-grpc-protocol-admin-key`)."""
        super().__init__(workdir, env)
        self.admin_key = admin_key
        self.tls = tls
        self.probe_tls = probe_tls
        self.host = "127.0.0.1"
        self.model_repository = Path(model_repository).resolve()
        self.model_config_name = model_config_name
        self.extra_args = list(extra_args)
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.root = pytriton_dir()

    @property
    def grpc_address(self) -> str:
        """The KServe v2 gRPC target (PREDMESH_INFERENCE_TRITON_TARGET)."""
        return f"{self.host}:{self.grpc_port}"

    def backend_dir(self) -> Path:
        """Build <workdir>/backends/python with the backend library, utils and our stub."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise FileNotFoundError(f"nvidia-pytriton has no python backend stub for Python {version}")
        target = self.workdir / "backends" / "python"
        target.mkdir(parents=True, exist_ok=True)
        src = self.root / "backends" / "python"
        for item in (src / "libtriton_python.so", src / "triton_python_backend_utils.py", stub):
            dest = target / item.name
            if not dest.exists():
                os.symlink(item, dest)
        return target.parent

    def command(self) -> Sequence[str]:
        cmd = [
            str(self.root / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self.backend_dir()}",
            f"--cache-directory={self.root / 'caches'}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=false",
            "--log-verbose=0",
            "--exit-timeout-secs=5",
        ]
        if self.model_config_name:
            cmd.append(f"--model-config-name={self.model_config_name}")
        if self.tls is not None:
            cmd += [
                "--grpc-use-ssl=true",
                "--grpc-use-ssl-mutual=true",  # clients must present a certificate of the mesh CA
                f"--grpc-server-cert={self.tls.cert}",
                f"--grpc-server-key={self.tls.key}",
                f"--grpc-root-cert={self.tls.ca}",
                "--allow-http=false",  # the HTTP endpoint would bypass mutual TLS (model control included)
            ]
        if self.admin_key:
            from services.inference.backends.kserve_grpc import triton_restricted_flag

            cmd.append(triton_restricted_flag(self.admin_key))
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        env = super().environment()
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, env.get("LD_LIBRARY_PATH")]))
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
        # The stub must not inherit our test/CLI interpreter's module search tweaks.
        env.pop("PYTHONHOME", None)
        return env

    def ready(self) -> bool:
        return grpc_server_ready(self.grpc_address, tls=self.probe_tls)

    def stop(self, timeout: float = 10.0, sig: int = 15) -> None:
        super().stop(timeout=timeout, sig=sig)
        shutil.rmtree(self.workdir / "backends", ignore_errors=True)


class OrtWorker(PythonService):
    """An ONNX Runtime worker process (`python -m services.ortworker.app`)."""

    def __init__(
        self,
        model_repository: Path,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        name: str = "ort-worker",
    ) -> None:
        port = port or free_port()
        worker_env = {
            "PREDMESH_ORTWORKER_HOST": "127.0.0.1",
            "PREDMESH_ORTWORKER_PORT": str(port),
            "PREDMESH_ORTWORKER_MODEL_REPOSITORY": str(Path(model_repository).resolve()),
            "PYTHONUNBUFFERED": "1",
            # The process runs in its workdir: make our source tree importable.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            **(env or {}),
        }
        super().__init__(name, "services.ortworker.app", port, worker_env, workdir)
