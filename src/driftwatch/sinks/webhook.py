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


GITHUB_EVENT_TYPE_MAX = 100
GITHUB_PAYLOAD_KEYS = (
    "id",
    "type",
    "model",
    "rule",
    "occurred_at",
    "window",
    "drifted_features",
    "performance",
    "drifted_features_ratio",
)


def shape(fmt: str, body: dict[str, Any]) -> dict[str, Any]:
    """The request body for a webhook format, from the generic body.

    * ``generic``: the body itself (CONTRACT section 6).
    * ``airflow``: Airflow's stable REST API ``POST /api/v1/dags/{dag_id}/dagRuns``
      body: ``{"dag_run_id": id, "conf": body}`` (a repeated id answers 409: delivered).
    * ``github``: ``repository_dispatch``: ``{"event_type", "client_payload"}``, the
      event type at most 100 characters and the payload at most 10 top-level keys.
    * ``slack``: an incoming-webhook message: fallback ``text`` plus Block Kit blocks.
    """
    if fmt == "generic":
        return body
    if fmt == "airflow":
        return {"dag_run_id": body["id"], "conf": body}
    if fmt == "github":
        event_type = f"driftwatch.{body['type']}"[:GITHUB_EVENT_TYPE_MAX]
        payload = {k: body[k] for k in GITHUB_PAYLOAD_KEYS if k in body}
        return {"event_type": event_type, "client_payload": payload}
    if fmt == "slack":
        return slack_message(body)
    raise ValueError(f"unknown webhook format {fmt!r}")


_HEADLINES = {
    "drift.detected": ":warning: Drift detected",
    "performance.degraded": ":chart_with_downwards_trend: Performance degraded",
    "resolved": ":white_check_mark: Resolved",
}


def summary(body: dict[str, Any]) -> str:
    head = _HEADLINES.get(body["type"], body["type"])
    return f"{head}: model {body['model']}, rule {body['rule']}"


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def slack_message(body: dict[str, Any]) -> dict[str, Any]:
    window = body.get("window") or {}
    fields = [
        f"*Model*\n`{body['model']}`",
        f"*Rule*\n`{body['rule']}`",
        f"*Window*\n{window.get('events', 0)} events, {window.get('labeled_events', 0)} labelled",
        f"*At*\n{body['occurred_at']}",
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": summary(body)[:150], "emoji": True},
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    lines = [
        f"• `{f['feature']}` PSI {_fmt(f.get('psi'))}"
        + (f", KS p={_fmt(f.get('ks_pvalue'))}" if f.get("ks_pvalue") is not None else "")
        for f in body.get("drifted_features", [])[:10]
    ]
    perf = body.get("performance")
    if perf and body["rule"] == "performance":
        lines.append(
            f"• {perf['metric']}: {_fmt(perf['current'])} (reference {_fmt(perf['reference'])})"
        )
    if lines:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}}
        )
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"notification {body['id']}"}]}
    )
    return {"text": summary(body), "blocks": blocks}


@dataclass(frozen=True)
class WebhookTarget:
    name: str
    url: str
    format: str = "generic"
    secret: str | None = None  # the resolved secret (never logged)
    timeout_seconds: float = 5.0
    max_attempts: int = 12
    max_age_seconds: float = 86_400.0
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    token: str | None = None  # bearer token (never logged)
    username: str | None = None  # basic auth
    password: str | None = None

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        elif self.username is not None and self.password is not None:
            raw = f"{self.username}:{self.password}".encode()
            out["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        if self.format == "github":
            out["Accept"] = "application/vnd.github+json"
            out["X-GitHub-Api-Version"] = "2022-11-28"
        return out

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
        on_outcome: Callable[[str, str, float], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.targets = targets
        self.on_outcome = on_outcome
        self.clock = clock
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
            self.on_outcome(item.webhook, "failure", 0.0)
            return
        now = self.clock()
        body = orjson.dumps(shape(target.format, orjson.loads(item.body)))
        headers = {"Content-Type": "application/json", "Idempotency-Key": item.id}
        headers.update(target.headers())
        if target.secret:
            ts = int(now)
            headers["webhook-id"] = item.id
            headers["webhook-timestamp"] = str(ts)
            headers["webhook-signature"] = sign(secret_key(target.secret), item.id, ts, body)
        wait: float | None = None
        started = time.perf_counter()

        def outcome(kind: str) -> None:
            self.on_outcome(item.webhook, kind, time.perf_counter() - started)

        try:
            resp = self._client.post(
                target.url, content=body, headers=headers, timeout=target.timeout_seconds
            )
            status = resp.status_code
            if 200 <= status < 300 or (target.format == "airflow" and status == 409):
                self.outbox.delivered(item.id, item.webhook)
                outcome("success")
                return
            error = f"HTTP {status}"
            if status not in RETRYABLE:
                self.outbox.failed(item.id, item.webhook, error)
                outcome("failure")
                log.warning("webhook %s: notification %s failed: %s", target.name, item.id, error)
                return
            wait = retry_after(resp.headers.get("Retry-After"), now)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        attempts = item.attempts + 1
        if attempts >= target.max_attempts or now - item.created_at >= target.max_age_seconds:
            self.outbox.failed(item.id, item.webhook, error)
            outcome("failure")
            log.warning(
                "webhook %s: giving up on %s after %d attempts: %s",
                target.name,
                item.id,
                attempts,
                error,
            )
            return
        if wait is None:
            wait = backoff(attempts - 1, target.backoff_initial_seconds, target.backoff_max_seconds)
        self.outbox.retry(item.id, item.webhook, now + wait, error)
        outcome("retry")
        log.info("webhook %s: %s, retrying %s in %.1fs", target.name, error, item.id, wait)
