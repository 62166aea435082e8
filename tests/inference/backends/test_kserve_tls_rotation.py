"""The orchestrator's KServe v2 clients (ORT workers, Triton) follow a rotated client certificate.

A real grpc.aio server with mutual TLS (GrpcServer, client certificates of its CA required)
serves the KServe v2 ModelReady call. The mesh moves to a new CA: the server comes back with a
certificate of the new CA trusting only it; until the backend's certificate files change it is
refused there, after they change the same backend object reaches it (no restart).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from predmesh.common.grpcserver import GrpcServer
from predmesh.common.settings import ServerSettings
from predmesh.common.tls import TlsFiles
from predmesh.local.pki import LocalCA
from predmesh.models.registry import scan_repository
from services.inference.backends.kserve_grpc import KServeGrpcBackend
from tests.common.test_tlschannel import install, issue

from ...models.builders import linear_onnx, regressor_spec, write_model

pytestmark = pytest.mark.timeout(60)


class _Ready(pb_grpc.GRPCInferenceServiceServicer):
    async def ModelReady(self, request: Any, context: Any) -> Any:
        return pb.ModelReadyResponse(ready=True)


async def serve(files: TlsFiles, port: int = 0) -> GrpcServer:
    server = GrpcServer(
        ServerSettings(
            port=port,
            grace_s=0.1,
            tls_cert_path=files.cert,
            tls_key_path=files.key,
            tls_ca_path=files.ca,
            allowed_clients={"/inference.GRPCInferenceService/*": ["inference"]},
        )
    )
    server.add_servicer(pb_grpc.add_GRPCInferenceServiceServicer_to_server, _Ready(), "inference.GRPCInferenceService")
    await server.start()
    return server


async def test_backend_uses_a_rotated_client_certificate_without_restart(tmp_path: Path) -> None:
    write_model(tmp_path / "repo", regressor_spec("tiny", 1), linear_onnx(np.array([[1.0]], dtype=np.float32)))
    [version] = scan_repository(tmp_path / "repo")
    old_ca, new_ca = LocalCA(tmp_path / "old"), LocalCA(tmp_path / "new")
    mounted = install(issue(old_ca, "inference"), tmp_path / "mounted")
    server = await serve(issue(old_ca, "ortworker"))
    backend = KServeGrpcBackend([server.address], name="ort_worker", load_timeout_s=5.0, tls=mounted, tls_poll_s=0)
    try:
        await backend.load(version)
        assert await backend.ready(version)
        port = int(server.address.rsplit(":", 1)[1])
        await server.stop()
        server = await serve(issue(new_ca, "ortworker"), port=port)  # trusts only the new CA now
        assert not await backend.ready(version)  # the old certificate is refused
        install(issue(new_ca, "inference"), tmp_path / "mounted")
        assert await backend.check_certificates()
        assert await backend.ready(version)  # same backend object, new certificate
    finally:
        await backend.close()
        await server.stop()
