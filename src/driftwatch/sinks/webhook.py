"""Webhook notifications: payloads (CONTRACT section 6), signing, and the sender thread.

The only module that imports the HTTP client (httpx).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from driftwatch.sinks.outbox import Outbox, Pending

log = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504}) | frozenset(range(500, 600))


def secret_key(secret: str) -> bytes:
    """Standard Webhooks secret ``whsec_<base64>`` -> key bytes; any other string is raw bytes."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode("utf-8")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def shape(fmt: str, body: dict[str, Any]) -> dict[str, Any]:
    """The request body for a webhook format, from the generic body."""
    if fmt == "generic":
        return body
    if fmt == "airflow":
        return {"dag_run_id": body["id"], "conf": body}
    if fmt == "github":
        event_type = f"driftwatch.{body['type']}"[:100]
        keys = (
            "id",
            "type",
            "model",
            "rule",
            "occurred_at",
            "window",
            "drifted_features",
            "performance",
        )
        return {"event_type": event_type, "client_payload": {k: body[k] for k in keys if k in body}}
    if fmt == "slack":
        return {
            "text": summary(body),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": summary(body)}},
            ],
        }
    raise ValueError(f"unknown webhook format {fmt!r}")


def summary(body: dict[str, Any]) -> str:
    kind = body["type"]
    head = {
        "drift.detected": ":warning: Drift detected",
        "performance.degraded": ":chart_with_downwards_trend: Performance degraded",
        "resolved": ":white_check_mark: Resolved",
    }.get(kind, kind)
    lines = [f"*{head}*: model `{body['model']}`, rule `{body['rule']}` at {body['occurred_at']}"]
    for f in body.get("drifted_features", [])[:10]:
        lines.append(f"- `{f['feature']}` psi={f.get('psi')} ks_pvalue={f.get('ks_pvalue')}")
    perf = body.get("performance")
    if perf:
        lines.append(f"- {perf['metric']}: {perf['current']} (reference {perf['reference']})")
    return "\n".join(lines)


@dataclass(frozen=True)
class WebhookTarget:
    name: str
    url: str
    format: str = "generic"
    secret: str | None = None  # the resolved secret (never logged)
    timeout_seconds: float = 5.0
    max_attempts: int = 12
    max_age_seconds: float = 86_400.0

    def __repr__(self) -> str:
        return f"WebhookTarget(name={self.name!r}, url={self.url!r}, format={self.format!r})"


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 30)))


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class WebhookSender:
    """Drains the outbox on its own thread; never touches the consumer."""

    def __init__(
        self,
        outbox: Outbox,
        targets: dict[str, WebhookTarget],
        on_outcome: Callable[[str, str], None],
        clock: Callable[[], float] = time.time,
        backoff_base: float = 1.0,
    ) -> None:
        self.outbox = outbox
        self.targets = targets
        self.on_outcome = on_outcome
        self.clock = clock
        self.backoff_base = backoff_base
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(follow_redirects=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="driftwatch-webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain_once()
            except Exception:  # the sender must survive anything; the outbox keeps the work
                log.exception("webhook sender: unexpected error")
            nxt = self.outbox.next_due_at()
            wait = 1.0 if nxt is None else min(1.0, max(0.0, nxt - self.clock()))
            self._wake.wait(wait)
            self._wake.clear()

    def drain_once(self) -> int:
        """Attempt every due notification once; returns how many were attempted."""
        due = self.outbox.due(self.clock())
        for item in due:
            if self._stop.is_set():
                break
            self._attempt(item)
        return len(due)

    def _attempt(self, item: Pending) -> None:
        target = self.targets.get(item.webhook)
        if target is None:
            self.outbox.failed(item.id, item.webhook, "webhook no longer configured")
            self.on_outcome(item.webhook, "failure")
            return
        now = self.clock()
        body = orjson.dumps(shape(target.format, orjson.loads(item.body)))
        headers = {"Content-Type": "application/json", "Idempotency-Key": item.id}
        if target.secret:
            ts = int(now)
            headers["webhook-id"] = item.id
            headers["webhook-timestamp"] = str(ts)
            headers["webhook-signature"] = sign(secret_key(target.secret), item.id, ts, body)
        wait: float | None = None
        try:
            resp = self._client.post(
                target.url, content=body, headers=headers, timeout=target.timeout_seconds
            )
            status = resp.status_code
            if 200 <= status < 300 or (target.format == "airflow" and status == 409):
                self.outbox.delivered(item.id, item.webhook)
                self.on_outcome(item.webhook, "success")
                return
            error = f"HTTP {status}"
            if status not in RETRYABLE:
                self.outbox.failed(item.id, item.webhook, error)
                self.on_outcome(item.webhook, "failure")
                log.warning("webhook %s: notification %s failed: %s", target.name, item.id, error)
                return
            wait = retry_after(resp.headers.get("Retry-After"), now)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        attempts = item.attempts + 1
        if attempts >= target.max_attempts or now - item.created_at >= target.max_age_seconds:
            self.outbox.failed(item.id, item.webhook, error)
            self.on_outcome(item.webhook, "failure")
            log.warning(
                "webhook %s: giving up on %s after %d attempts: %s",
                target.name,
                item.id,
                attempts,
                error,
            )
            return
        delay = wait if wait is not None else backoff(attempts - 1, self.backoff_base)
        self.outbox.retry(item.id, item.webhook, now + delay, error)
        self.on_outcome(item.webhook, "retry")
        log.info("webhook %s: %s, retrying %s in %.1fs", target.name, error, item.id, delay)
