"""Smoke test of the built image: the Helm chart's Python services run FROM THE IMAGE, one Predict.

The chart is rendered (`helm template`) with this loopback's endpoints as values, and every
Deployment/StatefulSet container that uses our image is started the way its pod would run it:
its `command`, its literal `env`, its ConfigMap/Secret volumes (rendered data, read-only) and its
writable volumes (emptyDir, PVC: fresh host directories) at the chart's mount paths, as uid 10001,
on the image's root filesystem remounted READ-ONLY. Each one is a `buildah run --isolation chroot
--network host` in one working container of the image, so they share the host's loopback with
Redis, the Kafka-protocol broker (tansu) and Envoy, which run from the host (predmesh.local).

Loopback overrides of the rendered env (listed in `loopback_env`): every service binds 127.0.0.1 on
a free port (<PREFIX>HOST/PORT), metrics are off (one port per pod in the chart), the orchestrator's
ORT worker target is the local worker, and the control plane uses its static-endpoint config
(the chart's mesh.yaml discovers gateways through the Kubernetes API).

Usage: python scripts/image_smoke.py [IMAGE]   (default localhost/predmesh:<version>)
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from helm_tools import helm_path  # noqa: E402

from predmesh.local.procs import PythonService, RedisServer, free_port, port_open, wait_until  # noqa: E402

CHART = ROOT / "deploy" / "helm" / "predmesh"
RELEASE = "smoke"
UID = "10001:10001"
API_KEY = "smoke-key"  # gateway.apiKeys: rendered into a Secret, mounted as a file the gateway re-reads
# Start order: dependencies first (the orchestrator loads its models on the ORT workers at start).
ORDER = ("logger", "features", "ort-worker", "inference", "gateway", "controlplane")


@dataclass
class PodContainer:
    """One rendered container of our image: what the kubelet would run."""

    component: str
    command: list[str]
    env: dict[str, str]
    mounts: dict[str, Path] = field(default_factory=dict)  # container path -> host dir
    read_only: set[str] = field(default_factory=set)
    prefix: str = ""


def render(values: Mapping[str, Any], workdir: Path) -> list[dict[str, Any]]:
    values_file = workdir / "smoke-values.yaml"
    values_file.write_text(yaml.safe_dump(dict(values)))
    out = subprocess.run(
        [str(helm_path()), "template", RELEASE, str(CHART), "-f", str(values_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def pod_containers(docs: list[dict[str, Any]], image_repo: str, workdir: Path) -> dict[str, PodContainer]:
    """Containers running `image_repo`, by component label, with their volumes materialized on the host."""
    data = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    found: dict[str, PodContainer] = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = doc["spec"]["template"]["spec"]
        component = doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for claim in doc["spec"].get("volumeClaimTemplates", []):
            volumes[claim["metadata"]["name"]] = {"name": claim["metadata"]["name"], "emptyDir": {}}
        for ctr in spec["containers"]:
            if not str(ctr.get("image", "")).startswith(image_repo):
                continue
            env = {}
            for item in ctr.get("env", []):
                if "value" in item:
                    env[item["name"]] = str(item["value"])
                elif "secretKeyRef" in item.get("valueFrom", {}):
                    ref = item["valueFrom"]["secretKeyRef"]
                    secret = data.get(("Secret", ref["name"]))
                    if secret is not None:
                        env[item["name"]] = _secret_data(secret)[ref["key"]].decode()
            pod = PodContainer(component, list(ctr["command"]) + list(ctr.get("args", [])), env)
            pod.prefix = next((k[: -len("HOST")] for k, v in env.items() if k.endswith("_HOST") and v == "0.0.0.0"), "")
            for mount in ctr.get("volumeMounts", []):
                host = workdir / "volumes" / component / mount["name"]
                host.mkdir(parents=True, exist_ok=True)
                volume = volumes[mount["name"]]
                if "configMap" in volume:
                    for key, text in data[("ConfigMap", volume["configMap"]["name"])]["data"].items():
                        (host / key).write_text(text)
                elif "secret" in volume:
                    for key, raw in _secret_data(data[("Secret", volume["secret"]["secretName"])]).items():
                        (host / key).write_bytes(raw)
                elif os.geteuid() == 0:  # emptyDir or a claim: a fresh directory the service may write
                    os.chown(host, 10001, 10001)
                pod.mounts[mount["mountPath"]] = host
                if mount.get("readOnly"):
                    pod.read_only.add(mount["mountPath"])
            found[component] = pod
    return found


def _secret_data(secret: dict[str, Any]) -> dict[str, bytes]:
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    out.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def loopback_env(pod: PodContainer, port: int, ports: Mapping[str, int], edge_port: int) -> dict[str, str]:
    """The rendered env with this machine's loopback addresses (see the module docstring)."""
    env = dict(pod.env)
    p = pod.prefix
    env.update({f"{p}HOST": "127.0.0.1", f"{p}PORT": str(port)})
    env.pop(f"{p}METRICS_PORT", None)
    if pod.component == "inference" and "ort-worker" in ports:
        env[f"{p}ORT_WORKERS"] = f"127.0.0.1:{ports['ort-worker']}"
    if pod.component == "controlplane":
        env.pop(f"{p}CONFIG_PATH", None)
        env[f"{p}GATEWAY_ENDPOINTS"] = f"127.0.0.1:{ports['gateway']}"
        env[f"{p}LISTENER_PORT"] = str(edge_port)
        env[f"{p}LISTENER_HOST"] = "127.0.0.1"
    return env


class ImageService(PythonService):
    """A rendered container's command run on the image's root filesystem (see module docstring).

    Like a kubelet with readOnlyRootFilesystem: in a private mount namespace the root is a
    read-only bind mount, /proc and /dev are mounted, the pod's volumes are bind-mounted (read-only
    where the chart says so), then chroot as 10001:10001 and exec the command with the image's
    Env and WorkingDir plus the rendered env.
    """

    ready_timeout_s = 90.0

    def __init__(
        self,
        pod: PodContainer,
        rootfs: Path,
        config: Mapping[str, Any],
        port: int,
        env: Mapping[str, str],
        workdir: Path,
    ) -> None:
        self.pod = pod
        self.rootfs = rootfs
        self.config = config
        self.ctr_env = dict(env)
        super().__init__(pod.component, " ".join(pod.command), port, {}, workdir)

    def command(self) -> Sequence[str]:
        root = shlex.quote(str(self.rootfs))
        steps = [
            "set -e",
            f"mount --bind {root} {root}",
            f"mount -o remount,bind,ro {root}",
            f"mount -t proc proc {root}/proc",
            f"mount --rbind /dev {root}/dev",
        ]
        for path, host in self.pod.mounts.items():
            target = shlex.quote(f"{self.rootfs}{path}")
            steps.append(f"mount --bind {shlex.quote(str(host))} {target}")
            if path in self.pod.read_only:
                steps.append(f"mount -o remount,bind,ro {target}")
        env = [e for e in self.config.get("Env") or []]
        env += [f"{k}={v}" for k, v in self.ctr_env.items()]
        workdir = self.config.get("WorkingDir") or "/"
        argv = ["/usr/bin/env", "-i", "-C", workdir, *env, *self.pod.command]
        steps.append(f"exec chroot --userspec={UID} {root} " + " ".join(shlex.quote(a) for a in argv))
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--fork",
            "--kill-child=SIGTERM",
            "sh",
            "-c",
            "\n".join(steps),
        ]


def _buildah(*args: str) -> str:
    return subprocess.run(["buildah", *args], check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def image_root(image: str, mount_points: set[str]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The root filesystem of a working container of `image` and the image's config.

    The volume mount points are created first (in the container's own layer, as a runtime would).
    """
    config = json.loads(_buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    ctr = _buildah("from", "--pull-never", "--quiet", image)
    try:
        mnt = Path(_buildah("mount", ctr))
        for path in mount_points:
            (mnt / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        yield mnt, config
    finally:
        subprocess.run(["buildah", "umount", ctr], capture_output=True)
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


WRITE_PROBE = """
import errno, os
out = []
for path in ("/app/probe", "/tmp/probe"):
    try:
        open(path, "w").close()
        os.unlink(path)
        out.append(path + " writable")
    except OSError as err:
        out.append(path + " " + errno.errorcode[err.errno])
print(os.getuid(), "; ".join(out))
"""


def probe_read_only(pod: PodContainer, rootfs: Path, config: Mapping[str, Any], workdir: Path) -> str:
    """Run a write probe exactly like `pod` runs (same mounts, user); fail unless only /tmp is writable."""
    probe = PodContainer(pod.component, ["python", "-c", WRITE_PROBE], {}, pod.mounts, pod.read_only, pod.prefix)
    cmd = ImageService(probe, rootfs, config, 0, {}, workdir).command()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    result = out.stdout.strip()
    if result != "10001 /app/probe EROFS; /tmp/probe writable":
        raise RuntimeError(f"read-only root probe: {result!r} {out.stderr[-500:]}")
    return "uid 10001, root filesystem read-only (/app: EROFS), /tmp volume writable"


def kill_processes_under(root: Path) -> None:
    """SIGKILL what still runs chrooted in `root` (a service that outlived its SIGTERM)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(proc / "root") == str(root):
                    os.kill(int(proc.name), 9)


def predict(target: str, api_key: str = API_KEY) -> Any:
    import grpc

    from predmesh.v1 import prediction_pb2, prediction_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_pb2_grpc.PredictionServiceStub(channel)
        request = prediction_pb2.PredictRequest(model="fraud", entity_id="u00042")
        return stub.Predict(request, timeout=10, metadata=[("x-api-key", api_key)] if api_key else [])


def rejected_without_key(target: str) -> str:
    """The status of a Predict without an API key (the chart's apiKeys Secret must be in force)."""
    import grpc

    try:
        predict(target, api_key="")
    except grpc.RpcError as err:
        return str(err.code().name)  # type: ignore[attr-defined]
    return "OK"


def smoke(image: str) -> int:
    from predmesh.demo import FEATURE_REGISTRY
    from predmesh.demo.load import load_demo
    from predmesh.local.envoy import EnvoyProcess
    from predmesh.local.kafka import TansuBroker, create_topics

    repo = image.rsplit(":", 1)[0]
    tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else "latest"
    workdir = Path(tempfile.mkdtemp(prefix="predmesh-image-smoke-"))
    started: list[Any] = []
    try:
        redis = RedisServer(workdir=workdir / "redis")
        started.append(redis.start())
        broker = TansuBroker(workdir=workdir / "broker")
        started.append(broker.start())
        load_demo(redis.url, n=100)
        create_topics(broker.bootstrap_servers, ["predictions", "shadow-predictions"])
        ports = {name: free_port() for name in ORDER}
        edge_port = free_port()
        values = {
            "image": {"repository": repo, "tag": tag},
            "redis": {"url": redis.url},
            "kafka": {"bootstrapServers": broker.bootstrap_servers},
            "metrics": {"enabled": False},
            "ortWorker": {"enabled": True},
            "monitor": {"enabled": False},
            "features": {"registry": yaml.safe_load(FEATURE_REGISTRY.read_text())},
            "gateway": {
                "targets": {c: f"127.0.0.1:{ports[c]}" for c in ("features", "inference", "logger")},
                "apiKeys": {API_KEY: ["fraud"]},
            },
        }
        pods = pod_containers(render(values, workdir), repo, workdir)
        missing = [c for c in ORDER if c not in pods]
        if missing:
            raise RuntimeError(f"the chart renders no container of {repo} for {missing}")
        mount_points = {path for pod in pods.values() for path in pod.mounts}
        with image_root(image, mount_points) as (mnt, config):
            try:
                probe = probe_read_only(pods["gateway"], mnt, config, workdir / "probe")
                print(f"smoke: {probe}", flush=True)
                for name in ORDER:
                    env = loopback_env(pods[name], ports[name], ports, edge_port)
                    svc = ImageService(pods[name], mnt, config, ports[name], env, workdir / "logs" / name)
                    started.append(svc.start())
                    print(f"smoke: {name} serving from the image ({' '.join(pods[name].command)})", flush=True)
                cluster = pods["controlplane"].env.get(f"{pods['controlplane'].prefix}NODE_CLUSTER", "predmesh-edge")
                envoy = EnvoyProcess(
                    f"127.0.0.1:{ports['controlplane']}", node_cluster=cluster, workdir=workdir / "logs" / "envoy"
                ).start()
                started.append(envoy)
                wait_until(lambda: port_open("127.0.0.1", edge_port), 30.0, "envoy edge listener")
                answer = predict(f"127.0.0.1:{edge_port}")
                no_key = rejected_without_key(f"127.0.0.1:{edge_port}")
                print(f"smoke: Predict without an API key: {no_key}", flush=True)
                users = _uids_under(mnt)
                print(
                    f"smoke: Predict via Envoy 127.0.0.1:{edge_port}: model={answer.model} "
                    f"version={answer.model_version} score={answer.prediction.score:.6f} "
                    f"degraded={answer.degraded} arm={answer.arm}",
                    flush=True,
                )
                print(f"smoke: service processes run as uid {sorted(users)} on a read-only root filesystem")
                if answer.degraded or users != {10001} or no_key != "UNAUTHENTICATED":
                    return 1
            finally:
                while len(started) > 2:
                    started.pop().stop()
                kill_processes_under(mnt)
        return 0
    finally:
        while started:
            started.pop().stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _uids_under(root: Path) -> set[int]:
    """Real uids of the processes chrooted in `root`."""
    uids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(proc / "root") == str(root):
                    status = (proc / "status").read_text()
                    uids.add(int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1]))
    return uids


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "scripts"))
    from image import IMAGE, project_version

    args = argv if argv is not None else sys.argv[1:]
    return smoke(args[0] if args else f"{IMAGE}:{project_version()}")


if __name__ == "__main__":
    sys.exit(main())
