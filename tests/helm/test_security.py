"""Chart security defaults: no API keys = no rendering; edge TLS from a kubernetes.io/tls Secret."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from predmesh.local.envoy import envoy_binary
from predmesh.local.pki import LocalCA
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


def envoy_bootstrap(docs: list[dict]) -> dict:  # type: ignore[type-arg]
    return dict(yaml.safe_load(one(docs, "ConfigMap", "envoy-bootstrap")["data"]["bootstrap.yaml"]))


def envoy_validates(
    bootstrap: dict,  # type: ignore[type-arg]
    tmp_path: Path,
    sds: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate` on the chart's bootstrap, with its certificate files and admin socket
    pointed at real local ones (a local CA's "envoy" certificate)."""
    sds = sds or {}
    ca = LocalCA(tmp_path / "pki")
    paths = ca.issue("envoy", ["envoy"])
    files = {"tls.crt": paths.cert, "tls.key": paths.key, "ca.crt": ca.cert_path}

    def local(text: str) -> str:
        text = text.replace("/var/run/envoy/admin.sock", str(tmp_path / "admin.sock"))
        for name, path in files.items():
            text = text.replace(f"/etc/envoy-tls/{name}", str(path))
        return text.replace("/etc/envoy-tls", str(ca.dir)).replace("/etc/envoy/", f"{tmp_path}/")

    for name, content in sds.items():  # the SDS documents of the bootstrap ConfigMap
        (tmp_path / name).write_text(local(content))
    text = local(json.dumps(bootstrap))
    config = tmp_path / "bootstrap.json"
    config.write_text(text)
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--disable-hot-restart", "--service-node", "pod-0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_envoy_bootstrap_has_the_overload_manager(helm_run: HelmRun, tmp_path: Path) -> None:
    docs = helm_run.template(extra=["--set", "envoy.overload.maxDownstreamConnections=1234"])
    bootstrap = envoy_bootstrap(docs)
    monitors = {m["name"]: m["typed_config"] for m in bootstrap["overload_manager"]["resource_monitors"]}
    assert monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"] == 402653184
    caps = monitors["envoy.resource_monitors.global_downstream_max_connections"]
    assert caps["max_active_downstream_connections"] == 1234
    assert bootstrap["static_resources"]["listeners"][0]["ignore_global_conn_limit"] is True  # probes still answer
    xds = bootstrap["static_resources"]["clusters"][0]
    assert "transport_socket" not in xds  # chart mTLS off: plaintext ADS (NetworkPolicy only)
    proc = envoy_validates(bootstrap, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_mtls_envoy_fetches_its_config_over_mtls(helm_run: HelmRun, tmp_path: Path) -> None:
    docs = helm_run.template(extra=MTLS)
    xds = envoy_bootstrap(docs)["static_resources"]["clusters"][0]
    tls = xds["transport_socket"]["typed_config"]["common_tls_context"]
    sds_config = tls["tls_certificate_sds_secret_configs"][0]["sds_config"]
    assert sds_config["path_config_source"]["path"] == "/etc/envoy/xds-client-cert.yaml"
    validation = tls["combined_validation_context"]["default_validation_context"]
    assert validation["match_typed_subject_alt_names"][0]["matcher"] == {"exact": "controlplane"}
    data = one(docs, "ConfigMap", "envoy-bootstrap")["data"]
    cert = yaml.safe_load(data["xds-client-cert.yaml"])["resources"][0]["tls_certificate"]
    assert cert["certificate_chain"] == {"filename": "/etc/envoy-tls/tls.crt"}
    assert cert["watched_directory"] == {"path": "/etc/envoy-tls"}  # kubelet's Secret swap triggers a reload
    envoy = pod_spec(docs, "envoy")
    volumes = {v["name"]: v for v in envoy["volumes"]}
    assert volumes["xds-tls"]["secret"]["secretName"] == "pm-predmesh-envoy-tls"
    mounts = {m["name"]: m["mountPath"] for m in envoy["containers"][0]["volumeMounts"]}
    assert mounts["xds-tls"] == "/etc/envoy-tls"
    # The control plane serves ADS with its own certificate (mTLS) and allows only "envoy" there (default).
    cp = env_of(main_container(docs, "controlplane"))
    assert cp["PREDMESH_CONTROLPLANE_TLS_CERT_PATH"] == "/etc/predmesh/tls/tls.crt"
    certs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}
    assert certs["pm-predmesh-controlplane-tls"]["spec"]["dnsNames"][0] == "controlplane"
    assert certs["pm-predmesh-envoy-tls"]["spec"]["dnsNames"][0] == "envoy"
    sds = {k: v for k, v in data.items() if k != "bootstrap.yaml"}
    proc = envoy_validates(envoy_bootstrap(docs), tmp_path, sds)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_gateway_drain_delay_is_set_and_fits_the_grace_period(helm_run: HelmRun) -> None:
    docs = helm_run.template()
    env = env_of(main_container(docs, "gateway"))
    assert env["PREDMESH_GATEWAY_DRAIN_DELAY_S"] == "3"
    # preStop 3 + drain 3 + grace 10 + margin 5: the drain never eats into the in-flight grace.
    assert pod_spec(docs, "gateway")["terminationGracePeriodSeconds"] == 21
    assert "PREDMESH_FEATURES_DRAIN_DELAY_S" not in env_of(main_container(docs, "features"))
    off = helm_run.template(extra=["--set", "gateway.drainDelayS=0"])
    assert "PREDMESH_GATEWAY_DRAIN_DELAY_S" not in env_of(main_container(off, "gateway"))
    assert pod_spec(off, "gateway")["terminationGracePeriodSeconds"] == 18


TRITON_MTLS = [*MTLS, "--set", "triton.enabled=true", "--set", "triton.adminKey.existingSecret=triton-admin"]


def test_triton_with_mtls_needs_an_admin_key(helm_run: HelmRun) -> None:
    proc = helm_run.run(*helm_run.template_args(extra=[*MTLS, "--set", "triton.enabled=true"]))
    assert proc.returncode != 0
    assert "triton.adminKey.existingSecret" in proc.stderr


def test_triton_gets_mutual_tls_and_restricted_protocols(helm_run: HelmRun) -> None:
    docs = helm_run.template(extra=TRITON_MTLS)
    triton = main_container(docs, "triton")
    args = triton["args"]
    restricted = "model-repository,model-config,shared-memory,trace,logging:admin-key=$(TRITON_ADMIN_KEY)"
    assert f"--grpc-restricted-protocol={restricted}" in args
    http = next(a for a in args if a.startswith("--http-restricted-api="))
    assert "inference" in http and "model-repository" in http and "health" not in http  # probes stay open
    for flag in ("--grpc-use-ssl=true", "--grpc-use-ssl-mutual=true", "--grpc-root-cert=/etc/predmesh/tls/ca.crt"):
        assert flag in args
    assert env_of(triton)["TRITON_ADMIN_KEY"] == {"secretKeyRef": {"name": "triton-admin", "key": "admin-key"}}
    volumes = {v["name"]: v for v in pod_spec(docs, "triton")["volumes"]}
    assert volumes["mesh-tls"]["secret"]["secretName"] == "pm-predmesh-triton-tls"
    certs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}
    assert certs["pm-predmesh-triton-tls"]["spec"]["dnsNames"][0] == "triton"
    inference = env_of(main_container(docs, "inference"))
    assert inference["PREDMESH_INFERENCE_TRITON_TLS"] == "true"
    assert inference["PREDMESH_INFERENCE_TRITON_ADMIN_KEY"] == {
        "secretKeyRef": {"name": "triton-admin", "key": "admin-key"}
    }
    # The restricted-protocol flag the chart renders is the one the local mesh runs (tested for real there).
    from services.inference.backends.kserve_grpc import triton_restricted_flag

    assert triton_restricted_flag("$(TRITON_ADMIN_KEY)") in args


def test_triton_without_mtls_or_key_is_unchanged(helm_run: HelmRun) -> None:
    args = main_container(helm_run.template(extra=["--set", "triton.enabled=true"]), "triton")["args"]
    assert not [a for a in args if "restricted" in a or "ssl" in a]


def test_external_client_tls_from_secrets(helm_run: HelmRun) -> None:
    docs = helm_run.template(
        extra=[
            "--set", "redis.url=rediss://redis:6380/0",
            "--set", "redis.tls.secretName=redis-ca",
            "--set", "redis.tls.clientCertificate=true",
            "--set", "kafka.clientConfigSecret.name=kafka-sasl",
            "--set", "kafka.caSecret=kafka-ca",
            "--set", "tracing.otlpEndpoint=otel:4317",
            "--set", "tracing.tls.caSecret=otel-ca",
        ]
    )  # fmt: skip
    features = env_of(main_container(docs, "features"))
    assert features["PREDMESH_FEATURES_REDIS_TLS_CA_PATH"] == "/etc/predmesh/redis-tls/ca.crt"
    assert features["PREDMESH_FEATURES_REDIS_TLS_CERT_PATH"] == "/etc/predmesh/redis-tls/tls.crt"
    volumes = {v["name"]: v for v in pod_spec(docs, "features")["volumes"]}
    assert volumes["redis-tls"]["secret"]["secretName"] == "redis-ca"
    for component, prefix in (("logger", "PREDMESH_LOGGER_"), ("monitor", "PREDMESH_MONITOR_")):
        if component == "monitor" and not [d for d in docs if d["metadata"]["name"] == "pm-predmesh-monitor"]:
            continue  # the monitor is off in the test values
        env = env_of(main_container(docs, component))
        assert env[f"{prefix}KAFKA_EXTRA"] == {"secretKeyRef": {"name": "kafka-sasl", "key": "kafka-extra"}}
        mounts = {m["name"]: m["mountPath"] for m in pod_spec(docs, component)["containers"][0]["volumeMounts"]}
        assert mounts["kafka-tls"] == "/etc/predmesh/kafka-tls"
    assert "PREDMESH_FEATURES_KAFKA_EXTRA" not in features
    rediss = ["--set", "redis.url=rediss://redis:6380/0", "--set", "redis.tls.secretName=redis-ca"]
    ingest = env_of(main_container(helm_run.template(files=["ingest.yaml"], extra=rediss), "ingest"))
    assert ingest["PREDMESH_INGEST_REDIS_TLS_CA_PATH"] == "/etc/predmesh/redis-tls/ca.crt"
    for component in ("gateway", "features", "inference"):
        prefix = f"PREDMESH_{component.upper()}_"
        assert env_of(main_container(docs, component))[f"{prefix}OTLP_TLS_CA_PATH"] == "/etc/predmesh/otlp-tls/ca.crt"
        assert {v["name"] for v in pod_spec(docs, component)["volumes"]} >= {"otlp-tls"}


def test_redis_tls_without_rediss_url_fails(helm_run: HelmRun) -> None:
    proc = helm_run.run(*helm_run.template_args(extra=["--set", "redis.tls.secretName=redis-ca"]))
    assert proc.returncode != 0 and "rediss://" in proc.stderr
