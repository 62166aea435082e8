"""Chart security defaults: no API keys = no rendering; edge TLS from a kubernetes.io/tls Secret."""

from __future__ import annotations

from tests.helm.chart import HelmRun, env_of, main_container, one, pod_spec


def test_template_fails_without_api_keys(helm_run: HelmRun) -> None:
    proc = helm_run.run(*helm_run.template_args(base=False))
    assert proc.returncode != 0
    assert "gateway: no API keys" in proc.stderr and "allowAnonymous" in proc.stderr


def test_allow_anonymous_is_explicit(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=["--set", "gateway.allowAnonymous=true", "--set", "gateway.apiKeys=null"])
    env = env_of(main_container(docs, "gateway"))
    assert env["PREDMESH_GATEWAY_ALLOW_ANONYMOUS"] == "true"
    proc = helm_run.run(*helm_run.template_args(base=False, extra=["--set", "gateway.allowAnonymous=true"]))
    assert proc.returncode == 0, proc.stderr


def test_existing_key_secret_is_mounted_not_rendered(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=["--set", "gateway.apiKeysExistingSecret=team-keys"])
    volumes = {v["name"]: v for v in pod_spec(docs, "gateway")["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "team-keys"
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("api-keys")]


def test_edge_tls_secret_goes_to_the_control_plane(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=["--set", "edge.tls.secretName=edge-cert"])
    env = env_of(main_container(docs, "controlplane"))
    assert env["PREDMESH_CONTROLPLANE_EDGE_TLS_CERT_PATH"] == "/etc/predmesh/edge-tls/tls.crt"
    assert env["PREDMESH_CONTROLPLANE_EDGE_TLS_KEY_PATH"] == "/etc/predmesh/edge-tls/tls.key"
    volumes = {v["name"]: v for v in pod_spec(docs, "controlplane")["volumes"]}
    assert volumes["edge-tls"]["secret"]["secretName"] == "edge-cert"
    mesh = one(docs, "ConfigMap", "controlplane-mesh")["data"]["mesh.yaml"]
    assert "tls:" in mesh and "enabled: true" in mesh


MTLS = ["--set", "mtls.enabled=true", "--set", "mtls.certManager.issuerRef.name=mesh-ca"]


def test_mtls_certificates_mode(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=MTLS)
    certs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}
    assert {"pm-predmesh-gateway-tls", "pm-predmesh-features-tls", "pm-predmesh-envoy-tls"} <= set(certs)
    assert certs["pm-predmesh-features-tls"]["spec"]["dnsNames"][:2] == ["features", "pm-predmesh-features"]
    assert "pm-predmesh-features-headless.predmesh.svc" in certs["pm-predmesh-features-tls"]["spec"]["dnsNames"]
    for component in ("gateway", "features", "inference", "logger"):
        container = main_container(docs, component)
        env = env_of(container)
        prefix = f"PREDMESH_{component.upper()}_"
        assert env[f"{prefix}TLS_CA_PATH"] == "/etc/predmesh/tls/ca.crt"
        assert env[f"{prefix}HEALTH_PORT"] == "8086"
        assert container["readinessProbe"]["grpc"] == {"port": 8086}  # kubelet probes cannot do mTLS
        volumes = {v["name"]: v for v in pod_spec(docs, component)["volumes"]}
        assert volumes["mesh-tls"]["secret"]["secretName"] == f"pm-predmesh-{component}-tls"
    cp = env_of(main_container(docs, "controlplane"))
    assert cp["PREDMESH_CONTROLPLANE_UPSTREAM_TLS_CERT_PATH"] == "/etc/predmesh/envoy-tls/tls.crt"
    mesh = one(docs, "ConfigMap", "controlplane-mesh")["data"]["mesh.yaml"]
    assert "mtls: true" in mesh


def test_mtls_mesh_mode_only_annotates(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=["--set", "mtls.enabled=true", "--set", "mtls.mode=mesh"])
    assert not [d for d in docs if d["kind"] == "Certificate"]
    gateway = main_container(docs, "gateway")
    assert "PREDMESH_GATEWAY_TLS_CERT_PATH" not in env_of(gateway)
    annotations = pod_spec_metadata(docs, "gateway")["annotations"]
    assert annotations["linkerd.io/inject"] == "enabled"


def pod_spec_metadata(docs: list[dict], component: str) -> dict:  # type: ignore[type-arg]
    from tests.helm.chart import workload

    return dict(workload(docs, component)["spec"]["template"]["metadata"])
