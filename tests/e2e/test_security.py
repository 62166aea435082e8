"""Security defaults of the real local mesh: TLS edge, API keys required, key rotation, SSRF-safe callbacks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from predmesh.local.mesh import LocalMesh
from predmesh.local.pki import LocalCA
from predmesh.v1 import (
    events_pb2,
    events_pb2_grpc,
    features_pb2,
    features_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    prediction_pb2,
    prediction_pb2_grpc,
)

LOCAL_GRANT = {"models": ["*"], "name": "local", "callback_hosts": ["127.0.0.1"]}


def call(channel: grpc.Channel, key: str | None, model: str = "fraud") -> grpc.StatusCode:
    stub = prediction_pb2_grpc.PredictionServiceStub(channel)
    metadata = [("x-api-key", key)] if key else []
    try:
        stub.Predict(prediction_pb2.PredictRequest(model=model, entity_id="u00001"), timeout=10, metadata=metadata)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def until(check: Callable[[], bool], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def keys(mesh: LocalMesh) -> Iterator[Callable[[dict[str, object]], None]]:
    """Rewrite the gateway's key file (the mesh's own key always kept); restored afterwards."""

    def write(extra: dict[str, object]) -> None:
        mesh.write_api_keys({mesh.api_key: LOCAL_GRANT, **extra})

    yield write
    write({})


def test_edge_is_tls_and_plaintext_fails(mesh: LocalMesh) -> None:
    assert mesh.edge_scheme == "https" and mesh.ca_path is not None
    with mesh.edge_channel() as channel:
        assert call(channel, mesh.api_key) == grpc.StatusCode.OK
    with grpc.insecure_channel(mesh.edge_address) as plain:
        assert call(plain, mesh.api_key) == grpc.StatusCode.UNAVAILABLE


def test_anonymous_predict_is_unauthenticated_by_default(mesh: LocalMesh) -> None:
    with mesh.edge_channel(authenticated=False) as channel:
        assert call(channel, None) == grpc.StatusCode.UNAUTHENTICATED
        assert call(channel, "not-a-key") == grpc.StatusCode.UNAUTHENTICATED
    with mesh.gateway_channel(authenticated=False) as channel:
        assert call(channel, None) == grpc.StatusCode.UNAUTHENTICATED


def test_key_rotation_in_the_key_file_needs_no_restart(mesh: LocalMesh, keys: Callable[..., None]) -> None:
    assert mesh.gateway is not None
    pid = mesh.gateway.pid
    with mesh.edge_channel(authenticated=False) as channel:
        assert call(channel, "rotated-1") == grpc.StatusCode.UNAUTHENTICATED
        keys({"rotated-1": ["fraud"]})
        assert until(lambda: call(channel, "rotated-1") == grpc.StatusCode.OK)
        assert call(channel, "rotated-1", model="fraud_nn") == grpc.StatusCode.PERMISSION_DENIED
        keys({"rotated-2": ["*"]})  # rotate: the old key goes, the new one comes
        assert until(lambda: call(channel, "rotated-2") == grpc.StatusCode.OK)
        assert call(channel, "rotated-1") == grpc.StatusCode.UNAUTHENTICATED
    assert mesh.gateway.pid == pid


class CountingListener:
    """A TCP port that counts connection attempts (what an SSRF would reach)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_ssrf_callback_targets_are_refused_without_a_connection(mesh: LocalMesh, keys: Callable[..., None]) -> None:
    # A key whose allow-list matches every host name: internal addresses must still be refused.
    keys({"callbacks-anywhere": {"models": ["*"], "callback_hosts": ["*"]}})
    listener = CountingListener()
    try:
        with mesh.edge_channel(authenticated=False) as channel:
            stub = prediction_pb2_grpc.PredictionServiceStub(channel)
            assert until(lambda: call(channel, "callbacks-anywhere") == grpc.StatusCode.OK)

            def submit(target: str, key: str = "callbacks-anywhere") -> grpc.StatusCode:
                request = prediction_pb2.PredictAsyncRequest(
                    request=prediction_pb2.PredictRequest(model="fraud", entity_id="u00001"), callback_target=target
                )
                try:
                    stub.PredictAsync(request, timeout=10, metadata=[("x-api-key", key)])
                except grpc.RpcError as err:
                    return err.code()  # type: ignore[attr-defined, no-any-return]
                return grpc.StatusCode.OK

            refused = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
            for target in (
                f"127.0.0.1:{listener.port}",
                f"localhost:{listener.port}",
                "169.254.169.254:8080",
                "10.0.0.1:8443",
                "127.0.0.1:99999",
                f"[::1]:{listener.port}",
            ):
                assert submit(target) in refused, target
            assert submit("127.0.0.1:99999") == grpc.StatusCode.INVALID_ARGUMENT
            # The mesh's own key may call back to 127.0.0.1 (explicitly allow-listed), but not on port 22.
            assert submit("127.0.0.1:22", mesh.api_key) == grpc.StatusCode.PERMISSION_DENIED
        assert listener.accepted == 0
    finally:
        listener.close()


def _get_features(channel: grpc.Channel) -> grpc.StatusCode:
    stub = features_pb2_grpc.FeatureServiceStub(channel)
    request = features_pb2.GetFeaturesRequest(
        entity_type="user", entities=[features_pb2.EntityKey(entity_id="u00001")], features=["account_age_days"]
    )
    try:
        stub.GetFeatures(request, timeout=5)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def _open_ads(channel: grpc.Channel) -> grpc.StatusCode:
    """Open an ADS stream as an edge node and read the first listener answer."""
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    done = threading.Event()

    def requests() -> Iterator[discovery_pb2.DiscoveryRequest]:
        yield discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id="e2e-probe", cluster="predmesh-edge"),
            type_url="type.googleapis.com/envoy.config.listener.v3.Listener",
        )
        done.wait(5)

    try:
        responses = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
            requests(), timeout=5
        )
        next(responses)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined, no-any-return]
    finally:
        done.set()
    return grpc.StatusCode.OK


def test_internal_rpcs_need_a_mesh_certificate_of_an_allowed_identity(mesh: LocalMesh, tmp_path: Path) -> None:
    assert mesh.features is not None and mesh.inference is not None and mesh.logger is not None
    with grpc.insecure_channel(mesh.features.address) as plain:  # no certificate at all
        assert _get_features(plain) == grpc.StatusCode.UNAVAILABLE
    stranger = LocalCA(tmp_path / "other-ca").issue("gateway", ["gateway", "localhost", "127.0.0.1"])
    assert mesh.mesh_ca is not None
    creds = grpc.ssl_channel_credentials(
        mesh.mesh_ca.read_bytes(), stranger.key.read_bytes(), stranger.cert.read_bytes()
    )
    with grpc.secure_channel(mesh.features.address, creds) as forged:  # right name, wrong CA
        assert _get_features(forged) == grpc.StatusCode.UNAVAILABLE
    with mesh.internal_channel(mesh.features.address, identity="logger") as wrong:  # mesh cert, wrong identity
        assert _get_features(wrong) == grpc.StatusCode.PERMISSION_DENIED
    with mesh.internal_channel(mesh.features.address, identity="gateway") as right:
        assert _get_features(right) == grpc.StatusCode.OK

    assert mesh.gateway is not None  # the gateway serves the edge Envoy (and operators) over mTLS
    with grpc.insecure_channel(mesh.gateway_address) as plain:
        assert call(plain, mesh.api_key) == grpc.StatusCode.UNAVAILABLE
    with mesh.internal_channel(mesh.gateway_address, identity="features") as wrong:
        assert call(wrong, mesh.api_key) == grpc.StatusCode.PERMISSION_DENIED

    with mesh.internal_channel(mesh.inference.address, identity="gateway") as gateway_cert:
        stub = inference_pb2_grpc.InferenceServiceStub(gateway_cert)
        with pytest.raises(grpc.RpcError) as info:
            stub.ReloadModels(inference_pb2.ReloadModelsRequest(), timeout=5)  # operators only
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        assert stub.ListModels(inference_pb2.ListModelsRequest(), timeout=5).models

    if mesh.triton is not None:  # tritonserver itself runs --grpc-use-ssl-mutual
        from predmesh.local.triton import grpc_server_ready

        triton = mesh.triton.grpc_address  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError):
            grpc_server_ready(triton, timeout=3)  # no client certificate
        assert grpc_server_ready(triton, timeout=3, tls=mesh.identity_files("operator"))

    # Envoy's config stream (ADS) is mTLS too: only the envoy identity may open it.
    assert mesh.controlplane is not None
    with grpc.insecure_channel(mesh.controlplane.address) as plain:
        assert _open_ads(plain) == grpc.StatusCode.UNAVAILABLE
    with mesh.internal_channel(mesh.controlplane.address, identity="gateway") as wrong:
        assert _open_ads(wrong) == grpc.StatusCode.PERMISSION_DENIED
    with mesh.internal_channel(mesh.controlplane.address, identity="envoy") as envoy:
        assert _open_ads(envoy) == grpc.StatusCode.OK

    with mesh.internal_channel(mesh.logger.address, identity="features") as wrong:
        logger_stub = events_pb2_grpc.LoggerServiceStub(wrong)
        with pytest.raises(grpc.RpcError) as info:
            for _ in logger_stub.Publish(iter([events_pb2.EventBatch(sequence=1)]), timeout=5):
                pass
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
