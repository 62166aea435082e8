"""The retraining webhook: POST a DriftEvent as JSON, retried with back-off, SSRF-checked.

`RetrainWebhook(url, policy, ...)`: `await deliver(event)` checks the URL with the shared
callback policy (predmesh.common.callback_policy: allow-listed host, allowed port, no internal
address unless an allow-list entry is an IP/CIDR containing it; the resolved address is pinned),
then POSTs until a 2xx answer, waiting `backoff_delays` (exponential, full jitter) between
attempts until `horizon_s`. Connection errors, timeouts, 408, 429 and 5xx are retried; any other
answer, or a refused URL, fails at once. Returns True when delivered. Every outcome is counted
by `on_result(model, delivered)`, logged, and handed as a `WebhookOutcome` (status, attempts,
last HTTP status and error) to `on_outcome(event, outcome)` when given (the monitor records it
in the analytics store through Kafka: transport/webhook_log.py; a failure there is logged only).
Each attempt is a blocking http.client call in a worker thread; the waits are asyncio sleeps
(cancelled at stop).
The body carries `delivery_id` (also the `Idempotency-Key` header): retries may deliver twice.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable

from predmesh.common.callback_policy import CallbackPolicy, CallbackTarget
from predmesh.common.errors import PredmeshError
from services.monitor.core.retrain import DriftEvent, WebhookOutcome, backoff_delays

log = logging.getLogger(__name__)
RETRIED_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the checked address; the Host header stays the URL's host."""

    def __init__(self, target: CallbackTarget, timeout_s: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to the checked address, verified against the URL's host name (SNI too)."""

    def __init__(self, target: CallbackTarget, timeout_s: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s, context=context)
        self._address = target.address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def post_once(target: CallbackTarget, path: str, body: bytes, key: str, timeout_s: float, ca_file: str | None) -> int:
    """One POST (blocking); the HTTP status."""
    conn: http.client.HTTPConnection
    if target.tls:
        conn = _PinnedHTTPS(target, timeout_s, ssl.create_default_context(cafile=ca_file))
    else:
        conn = _PinnedHTTP(target, timeout_s)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": "predmesh-monitor"},
        )
        reply = conn.getresponse()
        reply.read(65536)
        return int(reply.status)
    finally:
        conn.close()


class RetrainWebhook:
    def __init__(
        self,
        url: str,
        policy: CallbackPolicy,
        on_result: Callable[[str, bool], None],
        timeout_s: float = 5.0,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 60.0,
        horizon_s: float = 3600.0,
        ca_file: str | None = None,
        rng: random.Random | None = None,
        on_outcome: Callable[[DriftEvent, WebhookOutcome], Awaitable[None]] | None = None,
    ) -> None:
        self._url = url
        self._policy = policy
        self._on_result = on_result
        self._timeout_s = timeout_s
        self._initial_s = initial_backoff_s
        self._max_s = max_backoff_s
        self._horizon_s = horizon_s
        self._ca_file = ca_file
        self._rng = rng or random.Random()
        self._on_outcome = on_outcome

    async def deliver(self, event: DriftEvent) -> bool:
        outcome = await self._deliver(event)
        self._on_result(event.model, outcome.delivered)
        if self._on_outcome is not None:
            try:
                await self._on_outcome(event, outcome)
            except Exception:
                log.exception("retraining webhook outcome of delivery %s not recorded", event.delivery_id)
        return outcome.delivered

    async def _deliver(self, event: DriftEvent) -> WebhookOutcome:
        what = f"retraining webhook for {event.model}:{event.version} (drift in {', '.join(event.drifted)})"
        try:
            target, path = await self._policy.check_url(self._url)
        except PredmeshError as err:
            log.error("%s failed: URL refused: %s", what, err.message)
            return WebhookOutcome("refused", 0, 0, f"URL refused: {err.message}", time.time())
        body = json.dumps(event.payload(), sort_keys=True).encode()
        delays = backoff_delays(self._initial_s, self._max_s, self._horizon_s, self._rng)
        attempt = 0
        while True:
            attempt += 1
            try:
                status = await asyncio.to_thread(
                    post_once, target, path, body, event.delivery_id, self._timeout_s, self._ca_file
                )
                error = f"HTTP {status}"
            except (OSError, http.client.HTTPException) as err:
                status, error = 0, f"{type(err).__name__}: {err}"
            if 200 <= status < 300:
                log.info("%s delivered (attempt %d, HTTP %d, delivery %s)", what, attempt, status, event.delivery_id)
                return WebhookOutcome("delivered", attempt, status, "", time.time())
            if status and status not in RETRIED_STATUS:
                log.error("%s failed: %s (not retried, attempt %d)", what, error, attempt)
                return WebhookOutcome("failed", attempt, status, f"{error} (not retried)", time.time())
            delay = next(delays, None)
            if delay is None:
                log.error("%s failed: %s after %d attempts (horizon %gs)", what, error, attempt, self._horizon_s)
                return WebhookOutcome("failed", attempt, status, f"{error} after {attempt} attempts", time.time())
            log.warning("%s attempt %d: %s; retrying in %.2fs", what, attempt, error, delay)
            await asyncio.sleep(delay)
