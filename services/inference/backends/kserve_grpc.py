"""KServe v2 gRPC backend: runs models on NVIDIA Triton or on our ONNX Runtime workers.

Both speak the KServe v2 `GRPCInferenceService` (Triton natively; our workers in
`services/ortworker/`), so one client backend serves both. A model version
`name:version` is addressed as KServe model `name`, version `version`; the float32
[N, D] batch goes out as the spec's `onnx.input` tensor and the spec's `onnx.output`
tensor comes back.

Targets: one or more `host:port` addresses of equivalent servers (a worker pool, or
one Triton). Each call picks the target with the fewest calls outstanding (ties:
round robin) or pure round robin; when a target is UNAVAILABLE the call moves on to
the next target while its deadline allows (inference is idempotent).

Errors (all PredmeshError): target down / connection refused -> Unavailable (fast, no
hang: the channel fails fast and reconnects with a short backoff); deadline spent ->
DeadlineExceeded; server overloaded -> ResourceExhausted; model not ready on the
server -> ModelNotReady; anything else -> ModelExecutionError (details in the log).

Model control (`model_control=True`, for a Triton started with
`--model-control-mode=explicit`): the server's repository is the orchestrator's, and
the orchestrator tells the server when to re-read a model: `load` of a version the
server does not serve yet (a new version directory), or of a new revision of a version
it serves (files replaced), asks every target to (re)load the model
(RepositoryModelLoad; Triton keeps serving the versions that did not change), then
waits until the version is ready. `unload` of a version whose directory is gone (after
the orchestrator drained it) asks the targets to re-read the model, so the server drops
that version only when no request can still reach it; the last version gone unloads
the model. Without it (ORT workers, Triton in poll/none mode) the server manages its
own repository and `load` only waits for readiness.

Version control (`version_control=True`, set when a bounded model pool drives the
backend, predmesh/models/pool.py): the server loads exactly the versions the orchestrator
loaded, per model: `load`/`unload` send RepositoryModelLoad for the model with a config
override whose `version_policy` is `specific` = the versions wanted now (Triton keeps
serving unchanged versions while it reloads), or RepositoryModelUnload when none is
left. `model_config(name)` gives the rest of the config (Triton needs the complete
config it would read from the repository; our ORT workers only read the policy). The
server starts with nothing loaded (`--model-control-mode=explicit` without
`--load-model`, or `PREDMESH_ORTWORKER_MODEL_CONTROL=explicit`).

Placement (`owners(model, version)`, with version control): only the targets it names
load and serve that version (core/placement.py: cold versions on their consistent-hash
owner, eager versions on every target); calls for it go to those targets only.

Ownership: one long-lived `tritonclient.grpc.aio.InferenceServerClient` (one grpc.aio
channel) per target, opened on the first `load` (on the running loop) and closed by
`close()`. With mutual TLS (`tls`), the certificate files are re-read every `tls_poll_s`
(FileWatcher); new content replaces every target's client (new calls use it at once, the old
one closes after `load_timeout_s`), so a rotated certificate or CA needs no restart. Every
call carries a deadline: the request's when it has one, else `timeout_s`. Threading: one
event loop; nothing blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from predmesh.common import telemetry
from predmesh.common.deadline import Deadline
from predmesh.common.errors import DeadlineExceeded, PredmeshError, ResourceExhausted, Unavailable
from predmesh.common.filewatch import FileWatcher
from predmesh.common.tls import TlsFiles
from predmesh.common.tlschannel import Credentials, check_credentials
from predmesh.models.errors import ModelExecutionError, ModelLoadError, ModelNotReady
from predmesh.models.registry import ModelVersion, VersionKey

log = logging.getLogger(__name__)

# Triton's restricted gRPC protocols (--grpc-restricted-protocol): model control, config, shared
# memory, tracing and logging need this header with the admin key; health, metadata, inference and
# statistics stay open to any mesh certificate (mutual TLS). Only the orchestrator holds the key.
# The flag names a key ("admin-key"); gRPC clients send it as the header "triton-grpc-protocol-<key>".
TRITON_ADMIN_KEY_NAME = "admin-key"
TRITON_ADMIN_HEADER = f"triton-grpc-protocol-{TRITON_ADMIN_KEY_NAME}"
TRITON_RESTRICTED_PROTOCOLS = ("model-repository", "model-config", "shared-memory", "trace", "logging")


def triton_restricted_flag(admin_key: str) -> str:
    """The tritonserver flag restricting TRITON_RESTRICTED_PROTOCOLS to callers sending the admin key."""
    protocols = ",".join(TRITON_RESTRICTED_PROTOCOLS)
    return f"--grpc-restricted-protocol={protocols}:{TRITON_ADMIN_KEY_NAME}={admin_key}"


Balance = Literal["least_outstanding", "round_robin"]

CHANNEL_ARGS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # A restarted worker is found again within ~1 s instead of gRPC's default 2 min cap.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class _Target:
    __slots__ = ("address", "client", "outstanding")

    def __init__(self, address: str, client: InferenceServerClient) -> None:
        self.address = address
        self.client = client
        self.outstanding = 0


def _status(err: InferenceServerException) -> str:
    return (err.status() or "").removeprefix("StatusCode.")


class KServeGrpcBackend:
    """Backend calling KServe v2 gRPC servers (see module docstring)."""

    def __init__(
        self,
        targets: Sequence[str],
        name: str = "kserve_grpc",
        timeout_s: float = 1.0,
        load_timeout_s: float = 10.0,
        balance: Balance = "least_outstanding",
        model_control: bool = False,
        version_control: bool = False,
        model_config: Callable[[str], dict[str, Any]] | None = None,
        owners: Callable[[str, str], Sequence[str]] | None = None,
        tls: TlsFiles | None = None,
        admin_key: str = "",
        tls_poll_s: float = 5.0,
    ) -> None:
        if not targets:
            raise ValueError("KServeGrpcBackend needs at least one target")
        self.name = name
        self.addresses = tuple(targets)
        self._timeout_s = timeout_s
        self._load_timeout_s = load_timeout_s
        self._balance = balance
        self._model_control = model_control or version_control
        self._version_control = version_control
        self._model_config = model_config or (lambda name: {})
        self._owners = owners  # version control: which targets host (model, version); None = all
        self._tls = tls
        self._tls_poll_s = tls_poll_s
        self._creds: Credentials | None = None  # the PEM triple the current clients were built with
        self._watcher: FileWatcher[Credentials] | None = None
        self._watch_start: asyncio.Task[None] | None = None
        self._retired: dict[InferenceServerClient, asyncio.Task[None]] = {}
        # Sent on model-control calls when the server restricts them (Triton's restricted protocols).
        self._admin_headers = {TRITON_ADMIN_HEADER: admin_key} if admin_key else None
        self._targets: list[_Target] = []
        self._rr = itertools.count()
        self._loaded: set[VersionKey] = set()
        self._wanted: dict[str, dict[str, int]] = {}  # version control: model -> version -> revisions wanted
        self._closed = False

    # -- lifecycle ---------------------------------------------------------
    def _open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.name} backend is closed")
        if not self._targets:
            if self._tls is not None:
                self._creds = check_credentials(list(self._tls.read()))
            self._targets = [_Target(addr, self._client(addr)) for addr in self.addresses]
            if self._tls is not None:
                self._watch_certificates(self._tls)

    def _watch_certificates(self, tls: TlsFiles) -> None:
        """Re-read the client certificate files; new content -> new clients (rotation without restart)."""
        self._watcher = FileWatcher(
            [tls.cert, tls.key, tls.ca],
            check_credentials,
            self._renew_clients,
            self._tls_poll_s,
            name=f"{self.name} client certificate {tls.cert}",
        )
        self._watch_start = asyncio.get_running_loop().create_task(self._start_watching(self._watcher))

    async def _start_watching(self, watcher: FileWatcher[Credentials]) -> None:
        try:
            await watcher.start()
        except Exception:  # unreadable now: keep the clients opened with the current files
            log.exception("%s: cannot watch its client certificate; it will not be re-read", self.name)

    def _renew_clients(self, creds: Credentials) -> None:
        if creds == self._creds or self._closed:
            return
        self._creds = creds
        for target in self._targets:
            old, target.client = target.client, self._client(target.address)
            task = asyncio.get_running_loop().create_task(self._close_later(old))
            self._retired[old] = task
        log.info("%s: client certificate changed; new calls use the new one", self.name)

    async def _close_later(self, client: InferenceServerClient) -> None:
        """Calls already on a replaced client get `load_timeout_s` to finish before it closes."""
        try:
            await asyncio.sleep(self._load_timeout_s)
            await client.close()
        finally:
            self._retired.pop(client, None)

    async def check_certificates(self) -> bool:
        """Re-read the certificate files now; True when the clients were replaced."""
        if self._watcher is None:
            return False
        before = self._creds
        await self._watcher.check_now()
        return self._creds != before

    def _client(self, addr: str) -> InferenceServerClient:
        if self._tls is None:
            return InferenceServerClient(addr, channel_args=CHANNEL_ARGS)
        return InferenceServerClient(  # mutual TLS: tritonclient reads the PEM files itself
            addr,
            channel_args=CHANNEL_ARGS,
            ssl=True,
            root_certificates=str(self._tls.ca),
            private_key=str(self._tls.key),
            certificate_chain=str(self._tls.cert),
        )

    async def load(self, model_version: ModelVersion) -> None:
        """Wait (up to `load_timeout_s`) until some target reports the version ready."""
        self._open()
        if model_version.key in self._loaded:
            return
        give_up = time.monotonic() + self._load_timeout_s
        if self._version_control:
            wanted = self._wanted.setdefault(model_version.name, {})
            wanted[model_version.version] = wanted.get(model_version.version, 0) + 1
            try:
                await self._set_versions(model_version.name)
                await self._wait_ready(model_version, give_up)
            except BaseException:
                if self._unwant(model_version):
                    await asyncio.shield(self._set_versions(model_version.name))
                raise
            return
        name_version = model_version.key[:2]
        # A new revision of a version the server already serves: make it re-read the files first.
        requested = self._model_control and any(k[:2] == name_version for k in self._loaded)
        if requested:
            await self._repository(model_version.name, load=True)
        await self._wait_ready(model_version, give_up, requested)

    def _hosts(self, name: str, version: str) -> list[_Target]:
        if self._owners is None:
            return self._targets
        owners = set(self._owners(name, version))
        return [t for t in self._targets if t.address in owners]

    async def _wait_ready(self, model_version: ModelVersion, give_up: float, requested: bool = True) -> None:
        last: str = "no answer"
        while True:
            ready_on = []
            for target in self._hosts(model_version.name, model_version.version):
                try:
                    if await target.client.is_model_ready(
                        model_version.name, model_version.version, client_timeout=0.5
                    ):
                        ready_on.append(target.address)
                    else:
                        last = f"{target.address}: model not ready"
                except InferenceServerException as err:
                    last = f"{target.address}: {_status(err)} {err.message()}"
            if ready_on:
                break
            if self._model_control and not requested:
                requested = True  # a version the server has not loaded: ask for it once, then wait
                await self._repository(model_version.name, load=True)
                continue
            if time.monotonic() >= give_up:
                raise ModelLoadError(
                    f"model {model_version} is not ready on {self.name} ({', '.join(self.addresses)}): {last}"
                )
            await asyncio.sleep(0.05)
        self._loaded.add(model_version.key)
        log.info("model %s ready on %s at %s", model_version, self.name, ", ".join(ready_on))

    async def unload(self, model_version: ModelVersion) -> None:
        self._loaded.discard(model_version.key)
        if self._version_control:
            if self._unwant(model_version) and self._targets:
                await self._set_versions(model_version.name)
            return
        if self._model_control and self._targets and not model_version.path.exists():
            # Drained and gone from the repository: now the server may drop it too.
            versions_left = any(p.name.isdigit() for p in model_version.path.parent.glob("*") if p.is_dir())
            await self._repository(model_version.name, load=versions_left)

    def _unwant(self, mv: ModelVersion) -> bool:
        """Drop one wanted revision of `mv`; True when no revision of that version is wanted any more."""
        wanted = self._wanted.get(mv.name, {})
        left = wanted.get(mv.version, 0) - 1
        if left > 0:
            wanted[mv.version] = left
            return False
        wanted.pop(mv.version, None)
        if not wanted:
            self._wanted.pop(mv.name, None)
        return True

    async def _set_versions(self, name: str) -> None:
        """Make every target serve exactly the wanted versions of `name` it hosts (version control)."""
        wanted = set(self._wanted.get(name, {}))
        base: dict[str, Any] | None = None
        for target in self._targets:
            versions = {v for v in wanted if target in self._hosts(name, v)}
            if not versions:
                await self._repository(name, load=False, targets=[target])
                continue
            if base is None:
                base = dict(await asyncio.to_thread(self._model_config, name))
            config = dict(base, version_policy={"specific": {"versions": sorted(int(v) for v in versions)}})
            await self._repository(name, load=True, config=json.dumps(config), targets=[target])

    async def _repository(
        self, name: str, load: bool, config: str | None = None, targets: list[_Target] | None = None
    ) -> None:
        """Ask every target to (re)load model `name` from its repository, or to unload it (errors are logged)."""
        action = "(re)load" if load else "unload"
        for target in self._targets if targets is None else targets:
            try:
                if load:
                    await target.client.load_model(
                        name, config=config, headers=self._admin_headers, client_timeout=self._load_timeout_s
                    )
                else:
                    await target.client.unload_model(
                        name, headers=self._admin_headers, client_timeout=self._load_timeout_s
                    )
                log.info("%s: %s did %s model %s", self.name, target.address, action, name)
            except InferenceServerException as err:
                log.warning("%s: %s could not %s model %s: %s", self.name, target.address, action, name, err.message())

    async def ready(self, model_version: ModelVersion) -> bool:
        if model_version.key not in self._loaded or not self._targets:
            return False
        for target in self._targets:
            try:
                if await target.client.is_model_ready(model_version.name, model_version.version, client_timeout=0.5):
                    return True
            except InferenceServerException:
                continue
        return False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watch_start is not None:
            self._watch_start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_start
        if self._watcher is not None:
            await self._watcher.stop()
        for client, task in list(self._retired.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()
        targets, self._targets = self._targets, []
        for target in targets:
            await target.client.close()
        self._loaded.clear()

    # -- inference ---------------------------------------------------------
    def _order(self, model_version: ModelVersion) -> list[_Target]:
        """Targets in the order to try them for one call."""
        hosts = self._hosts(model_version.name, model_version.version) or self._targets
        n = len(hosts)
        start = next(self._rr) % n
        rotated = hosts[start:] + hosts[:start]
        if self._balance == "least_outstanding":
            rotated.sort(key=lambda t: t.outstanding)  # stable: round robin among ties
        return rotated

    async def infer(
        self, model_version: ModelVersion, batch: np.ndarray, deadline: Deadline | None = None
    ) -> np.ndarray:
        if model_version.key not in self._loaded:
            raise ModelNotReady(f"model {model_version} is not loaded")
        deadline = deadline or Deadline.after(self._timeout_s)
        spec = model_version.spec
        data = np.ascontiguousarray(batch, dtype=np.float32)
        inputs = [InferInput(spec.onnx.input, list(data.shape), "FP32")]
        inputs[0].set_data_from_numpy(data)
        outputs = [InferRequestedOutput(spec.onnx.output)]
        error: PredmeshError | None = None
        for target in self._order(model_version):
            timeout = deadline.budget(what=f"running {model_version} on {self.name}")
            target.outstanding += 1
            try:
                with telemetry.outgoing_call(
                    "inference.GRPCInferenceService/ModelInfer",
                    **{
                        "rpc.system": "grpc",
                        "server.address": target.address,
                        "predmesh.backend": self.name,
                        "predmesh.model": spec.name,
                        "predmesh.model_version": spec.version,
                        "batch.rows": len(data),
                    },
                ) as headers:
                    result = await target.client.infer(
                        spec.name,
                        inputs,
                        model_version=spec.version,
                        outputs=outputs,
                        client_timeout=timeout,
                        headers=headers,
                    )
            except InferenceServerException as err:
                error = self._translate(err, model_version, target.address)
                if isinstance(error, Unavailable):
                    continue  # down, or the model is not loaded there: try the next target
                raise error from err
            finally:
                target.outstanding -= 1
            array = result.as_numpy(spec.onnx.output)
            if array is None or len(array) != len(data):
                log.error("%s answered %s rows for %s from %s", model_version, array, len(data), target.address)
                raise ModelExecutionError(f"model {model_version} returned a malformed output")
            out: np.ndarray = array
            return out
        assert error is not None
        raise error

    def _translate(self, err: InferenceServerException, mv: ModelVersion, address: str) -> PredmeshError:
        status = _status(err)
        where = f"{self.name} at {address}"
        if status == "UNAVAILABLE":
            return Unavailable(f"model {mv}: {where} is unavailable")
        if status == "DEADLINE_EXCEEDED":
            return DeadlineExceeded(f"model {mv}: deadline exceeded on {where}")
        if status == "RESOURCE_EXHAUSTED":
            return ResourceExhausted(f"model {mv}: {where} is overloaded")
        if status == "NOT_FOUND" or (status == "UNKNOWN" and "not ready" in (err.message() or "")):
            return ModelNotReady(f"model {mv} is not ready on {where}")
        if status == "CANCELLED":
            return Unavailable(f"model {mv}: call to {where} was cancelled")
        log.error("model %s failed on %s: [%s] %s", mv, where, status, err.message())
        return ModelExecutionError(f"model {mv} failed to run")
