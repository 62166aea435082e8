"""The admin API has its own port; with mTLS only operator certificates may change the config."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from predmesh.common.tls import TlsFiles
from predmesh.local.pki import LocalCA
from services.controlplane.app import ControlPlaneApp
from services.controlplane.settings import ControlPlaneSettings
from services.controlplane.transport.admin import AdminClient


def identity(ca: LocalCA, name: str) -> TlsFiles:
    paths = ca.issue(name, [name, "localhost", "127.0.0.1"])
    return TlsFiles(paths.cert, paths.key, ca.cert_path)


async def test_admin_is_not_on_the_ads_port_and_needs_an_operator_certificate(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "pki")
    own = identity(ca, "controlplane")
    settings = ControlPlaneSettings(
        port=0,
        admin_port=0,
        grace_s=0.1,
        gateway_endpoints="127.0.0.1:1",
        tls_cert_path=own.cert,
        tls_key_path=own.key,
        tls_ca_path=own.ca,
    )
    app = ControlPlaneApp(settings)
    await app.start()
    try:
        assert app.admin_address != app.address
        # Whoever reaches ADS (even with a mesh certificate) cannot change the config there.
        async with AdminClient(app.address, tls=identity(ca, "operator")) as on_ads_port:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await on_ads_port.patch_config({"rate_limit": {"max_tokens": 1}})
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        async with AdminClient(app.admin_address) as no_cert:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await no_cert.get_config()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        async with AdminClient(app.admin_address, tls=identity(ca, "gateway")) as wrong:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await wrong.patch_config({"rate_limit": {"max_tokens": 1}})
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        version = app.version
        async with AdminClient(app.admin_address, tls=identity(ca, "operator")) as operator:
            assert await operator.patch_config({"rate_limit": {"max_tokens": 7}}) != version
        assert app.publisher.config.rate_limit.max_tokens == 7
    finally:
        await app.stop()
