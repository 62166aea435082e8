"""Triton's restricted gRPC protocols with the real tritonserver: model control needs the admin key.

Triton runs as the local mesh runs it (mutual TLS, HTTP off, --grpc-restricted-protocol with a
key only the orchestrator holds). Any mesh certificate may check health and infer; loading a
model without the `triton-grpc-protocol-admin-key` header is refused by Triton before it looks at the repository.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from predmesh.common.tls import TlsFiles
from predmesh.local.pki import LocalCA
from predmesh.local.triton import TritonServer
from services.inference.backends.kserve_grpc import TRITON_ADMIN_HEADER

pytestmark = pytest.mark.timeout(120)

ADMIN_KEY = "test-admin-key"


def identity(ca: LocalCA, name: str) -> TlsFiles:
    paths = ca.issue(name, [name, "localhost", "127.0.0.1"])
    return TlsFiles(paths.cert, paths.key, ca.cert_path)


@pytest.fixture(scope="module")
def restricted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServer, LocalCA]]:
    root = tmp_path_factory.mktemp("triton-restricted")
    ca = LocalCA(root / "pki")
    repo = root / "models"
    repo.mkdir()
    server = TritonServer(
        repo,
        workdir=root / "run",
        extra_args=["--model-control-mode=explicit"],
        tls=identity(ca, "triton"),
        probe_tls=identity(ca, "operator"),
        admin_key=ADMIN_KEY,
    )
    server.start()
    try:
        yield server, ca
    finally:
        server.stop()


def client(server: TritonServer, files: TlsFiles) -> InferenceServerClient:
    return InferenceServerClient(
        server.grpc_address,
        ssl=True,
        root_certificates=str(files.ca),
        private_key=str(files.key),
        certificate_chain=str(files.cert),
    )


async def test_model_control_needs_the_admin_key(restricted: tuple[TritonServer, LocalCA]) -> None:
    server, ca = restricted
    assert f":admin-key={ADMIN_KEY}" in " ".join(server.command())
    triton = client(server, identity(ca, "gateway"))  # a mesh certificate, but not the orchestrator's key
    try:
        assert await triton.is_server_ready()  # health stays open to mesh certificates
        with pytest.raises(InferenceServerException) as refused:
            await triton.load_model("anything", client_timeout=5)
        assert TRITON_ADMIN_HEADER in (refused.value.message() or "")
        with pytest.raises(InferenceServerException) as wrong:
            await triton.load_model("anything", headers={TRITON_ADMIN_HEADER: "guess"}, client_timeout=5)
        assert TRITON_ADMIN_HEADER in (wrong.value.message() or "")
        with pytest.raises(InferenceServerException) as allowed:  # past the restriction: the model is unknown
            await triton.load_model("anything", headers={TRITON_ADMIN_HEADER: ADMIN_KEY}, client_timeout=5)
        assert TRITON_ADMIN_HEADER not in (allowed.value.message() or "")
        assert "anything" in (allowed.value.message() or "")
    finally:
        await triton.close()
