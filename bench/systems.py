"""The systems `python -m bench.run compare` measures, as one table of specs.

A `Component` is something a run started (a process or a process tree in one session)
with the address its clients call. A `SystemSpec` says what one row measures: which
component the load generator calls and how (`kind`), and which components' processes
make up its CPU columns (`parts`). A row runs when every component it names was started;
otherwise it is reported as not run, with the reason the component gave.

CPU columns (`COLUMNS`): `edge` is the proxy in front (Envoy; Ray's HTTP proxy), `gateway`
the process that answers the client (predmesh's gateway; the FastAPI app), `features`,
`orchestrator` (predmesh's orchestrator; MLServer; Ray's model replica), `worker` (ORT
worker; Triton), `logger`, `broker`, `redis`, `client` (the load generator itself) and
`other` (Ray's GCS, raylet and controller). A component with `classify` spreads its
session's processes over columns by command line (Ray).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import TargetSpec

COLUMNS = (
    "edge",
    "gateway",
    "features",
    "orchestrator",
    "worker",
    "logger",
    "broker",
    "redis",
    "client",
    "other",
)
SERVER_COLUMNS = tuple(c for c in COLUMNS if c != "client")


@dataclass
class Component:
    """A started process tree: its client address (host:port or URL) and session leader pids."""

    name: str
    address: str
    pids: list[int]
    classify: Callable[[str], str] | None = None  # command line -> column (whole-session peers)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SystemSpec:
    key: str
    label: str
    group: str  # "end-to-end", "model", "features"
    kind: str  # "predict", "infer", "v2", "features", "http-predict", "feast"
    target: str  # the component the client calls
    parts: tuple[tuple[str, str], ...]  # (column, component); column "*" = the component's classify


PREDMESH_E2E = (("gateway", "gateway"), ("features", "features"), ("orchestrator", "inference"), ("redis", "redis"))
LOGGING = (("logger", "logger"), ("broker", "broker"))

SYSTEMS: tuple[SystemSpec, ...] = (
    SystemSpec(
        "predmesh-full",
        "predmesh full path: Envoy -> gateway + Kafka logging",
        "end-to-end",
        "predict",
        "envoy",
        (("edge", "envoy"), *PREDMESH_E2E, *LOGGING),
    ),
    SystemSpec(
        "predmesh-gw+log",
        "predmesh gateway Predict + Kafka logging (no Envoy)",
        "end-to-end",
        "predict",
        "gateway",
        (*PREDMESH_E2E, *LOGGING),
    ),
    SystemSpec(
        "predmesh-gateway",
        "predmesh gateway Predict (features + inference, no logging, no Envoy)",
        "end-to-end",
        "predict",
        "gateway-nolog",
        (("gateway", "gateway-nolog"), *PREDMESH_E2E[1:]),
    ),
    SystemSpec(
        "fastapi-naive",
        "FastAPI + uvicorn, 6 Redis HGETs + ORT per request (JSON/HTTP)",
        "end-to-end",
        "http-predict",
        "fastapi",
        (("gateway", "fastapi"), ("redis", "redis")),
    ),
    SystemSpec(
        "ray-serve",
        "Ray Serve 2.60: proxy -> model deployment -> features deployment (Redis) (JSON/HTTP)",
        "end-to-end",
        "http-predict",
        "ray",
        (("*", "ray"), ("redis", "redis")),
    ),
    SystemSpec(
        "predmesh-orchestrator",
        "predmesh orchestrator Infer, in-process ORT (named features + preprocessing)",
        "model",
        "infer",
        "inference",
        (("orchestrator", "inference"),),
    ),
    SystemSpec(
        "predmesh-orch->ortw",
        "predmesh orchestrator Infer -> ORT worker process (micro-batched)",
        "model",
        "infer",
        "inference-ortw",
        (("orchestrator", "inference-ortw"), ("worker", "ort-worker")),
    ),
    SystemSpec(
        "predmesh-orch->triton",
        "predmesh orchestrator Infer -> Triton",
        "model",
        "infer",
        "inference-triton",
        (("orchestrator", "inference-triton"), ("worker", "triton")),
    ),
    SystemSpec(
        "mlserver",
        "MLServer 1.7.1 V2 ModelInfer (custom ORT runtime, FP32 tensor)",
        "model",
        "v2",
        "mlserver",
        (("orchestrator", "mlserver"),),
    ),
    SystemSpec(
        "triton",
        "Triton 2.51 direct V2 ModelInfer (python backend ORT, FP32 tensor)",
        "model",
        "v2",
        "triton",
        (("worker", "triton"),),
    ),
    SystemSpec(
        "predmesh-features",
        "predmesh features GetFeatures (1 entity, 6 stored features)",
        "features",
        "features",
        "features",
        (("features", "features"), ("redis", "redis")),
    ),
    SystemSpec(
        "feast-server",
        "Feast 0.67 feature server /get-online-features (Redis online store)",
        "features",
        "feast",
        "feast",
        (("features", "feast"), ("redis", "redis")),
    ),
)


def components_of(spec: SystemSpec) -> list[str]:
    return list(dict.fromkeys([spec.target, *(name for _, name in spec.parts)]))


def missing(spec: SystemSpec, started: Mapping[str, Component]) -> list[str]:
    """The components `spec` needs that did not start (empty: the row can run)."""
    return [name for name in components_of(spec) if name not in started]


def target_for(spec: SystemSpec, started: Mapping[str, Component], model: str, version: str, repo: str) -> TargetSpec:
    address = started[spec.target].address
    if spec.kind == "predict":
        return TargetSpec("bench.targets:make_predict", {"address": address, "model": model, "version": version})
    if spec.kind == "infer":
        return TargetSpec("bench.targets:make_infer", {"address": address, "model": model, "version": version})
    if spec.kind == "v2":
        # The version is pinned: Triton serves every version of the repository, and an empty
        # model_version means its newest (fraud:3 since stop 15, another input width).
        kwargs = {"address": address, "model_repository": repo, "model": model, "version": version}
        kwargs["served_version"] = version
        return TargetSpec("bench.targets:make_v2_infer", kwargs)
    if spec.kind == "features":
        return TargetSpec("bench.targets:make_features", {"address": address})
    if spec.kind == "http-predict":
        return TargetSpec("bench.targets:make_fastapi", {"url": address})
    if spec.kind == "feast":
        return TargetSpec("bench.targets:make_feast", {"url": address})
    raise ValueError(f"unknown system kind {spec.kind!r}")


def sessions_for(
    spec: SystemSpec, started: Mapping[str, Component]
) -> tuple[dict[str, list[int]], Callable[[str, str], str] | None]:
    """Session pids per column of `spec`'s row, and the classifier for whole-session peers."""
    sessions: dict[str, list[int]] = {}
    split: dict[str, Callable[[str], str]] = {}
    for column, name in spec.parts:
        component = started[name]
        if column == "*":
            if component.classify is None:
                raise ValueError(f"{spec.key}: component {name} has no classifier for column '*'")
            sessions.setdefault(f"*{name}", []).extend(component.pids)
            split[f"*{name}"] = component.classify
        else:
            sessions.setdefault(column, []).extend(component.pids)
    if not split:
        return sessions, None

    def classify(part: str, cmdline: str) -> str:
        return split[part](cmdline) if part in split else part

    return sessions, classify


def cpu_columns(cpu_us: Mapping[str, float]) -> dict[str, float]:
    """CPU us per request by column, plus `servers` (every column but the client) and `total`."""
    out = {c: float(cpu_us[c]) for c in COLUMNS if c in cpu_us}
    out["servers"] = sum(v for c, v in out.items() if c in SERVER_COLUMNS)
    out["total"] = out["servers"] + out.get("client", 0.0)
    return out
