"""Webhook notifications: payloads (CONTRACT section 6), signing, and the sender thread.

The only module that imports the HTTP client (httpx, and its transport httpcore).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpcore
import httpx
import orjson

from driftwatch.sinks.outbox import Outbox, Pending

log = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504}) | frozenset(range(500, 600))

SECRET_PREFIX = "whsec_"
#: Standard Webhooks: a secret is "random, between 24 bytes (192 bits) and 64 bytes".
SECRET_MIN_BYTES = 24
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no whitespace: safe in a header


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot be used to sign, or None. Never quotes the secret.

    ``whsec_<base64>``: the standard base64 alphabet, ``=`` padding optional (as the
    Standard Webhooks libraries accept), decoding to at least ``SECRET_MIN_BYTES``.
    Any other non-empty string is used as raw bytes (CONTRACT section 6).
    """
    if not secret.startswith(SECRET_PREFIX):
        return None if secret else "the secret is empty"
    payload = secret[len(SECRET_PREFIX) :]
    if not payload:
        return "the whsec_ secret is empty"
    if payload != payload.strip():
        return "the whsec_ secret has surrounding whitespace (a trailing newline?)"
    padded = payload + "=" * (-len(payload) % 4)
    try:
        if not _BASE64.fullmatch(padded):
            raise ValueError
        key = base64.b64decode(padded, validate=True)
    except (ValueError, binascii.Error):
        return (
            "the part after whsec_ is not valid base64 "
            "(standard alphabet A-Z a-z 0-9 + /, optional = padding)"
        )
    if len(key) < SECRET_MIN_BYTES:
        return (
            f"the whsec_ secret decodes to {len(key)} bytes; Standard Webhooks secrets are "
            f"at least {SECRET_MIN_BYTES} random bytes (e.g. whsec_$(openssl rand -base64 32))"
        )
    return None


def secret_key(secret: str) -> bytes:
    """Standard Webhooks secret ``whsec_<base64>`` -> key bytes; any other string is raw bytes.

    Raises ValueError (naming the problem, never the secret) for a malformed secret.
    """
    problem = secret_problem(secret)
    if problem is not None:
        raise ValueError(problem)
    if secret.startswith(SECRET_PREFIX):
        payload = secret[len(SECRET_PREFIX) :]
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    return secret.encode("utf-8")


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be sent as ``Authorization: Bearer <token>``, or None."""
    if _TOKEN.fullmatch(token):
        return None
    return "the token must be printable ASCII without spaces or line breaks"


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
    "data_quality",
)
#: rule-specific blocks of the generic body; GitHub takes the firing rule's one as its
#: tenth key (``data_quality`` for every rule but ``version_regression``, whose
#: ``versions`` takes its place), so ``client_payload`` stays within 10 keys
GITHUB_RULE_BLOCKS = {"version_regression": "versions"}


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
        block = GITHUB_RULE_BLOCKS.get(body.get("rule", ""))
        keys = GITHUB_PAYLOAD_KEYS if block is None else (*GITHUB_PAYLOAD_KEYS[:-1], block)
        payload = {k: body[k] for k in keys if k in body}
        return {"event_type": event_type, "client_payload": payload}
    if fmt == "slack":
        return slack_message(body)
    raise ValueError(f"unknown webhook format {fmt!r}")


_HEADLINES = {
    "drift.detected": ":warning: Drift detected",
    "performance.degraded": ":chart_with_downwards_trend: Performance degraded",
    "data_quality.degraded": ":broken_heart: Data quality degraded",
    "rollback.recommended": ":rewind: Rollback recommended",
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
    if perf and body["rule"] in ("performance", "estimated_performance"):
        lines.append(
            f"• {perf['metric']}{' (estimated)' if perf.get('estimated') else ''}: "
            f"{_fmt(perf['current'])} (reference {_fmt(perf['reference'])})"
        )
    quality = body.get("data_quality")
    if quality and body["rule"] == "data_quality":
        lines.extend(
            f"• `{b['feature']}` {b['ratio'].replace('_', ' ')} {_fmt(b['value'])}"
            f" (max {_fmt(b['threshold'])})"
            for b in quality.get("features", [])[:10]
        )
    versions = body.get("versions")
    if versions and body["rule"] == "version_regression":
        for role in ("newest", "previous"):
            v = versions.get(role)
            if v:
                lines.append(
                    f"• {role} `{v['version']}`: {v['metric']} {_fmt(v['value'])}"
                    f" ({v['labeled_events']} labelled)"
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


_DELTA_SECONDS = re.compile(r"[0-9]+")


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    None for anything else (negative, fractional, non-ASCII digits, an invalid date).
    """
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)  # may be inf for absurd values: the caller caps it
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


class _AttemptDeadline(httpcore.NetworkBackend):
    """Caps every socket operation at the time left of the attempt in progress.

    httpx's timeouts apply per operation (connect, each read, each write): a receiver
    that trickles a byte at a time would hold the sender for ever. With this backend a
    whole attempt takes at most its ``timeout_seconds``. Used by the sender thread only.
    """

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()
        self.until: float | None = None  # time.monotonic() deadline; None: no attempt

    def left(self, timeout: float | None, timeout_error: type[Exception]) -> float | None:
        if self.until is None:
            return timeout
        left = self.until - time.monotonic()
        if left <= 0:
            raise timeout_error("the attempt exceeded its timeout_seconds")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, self.left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream, self)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, self.left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream, self)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _AttemptDeadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.start_tls(
            ssl_context, server_hostname, self._deadline.left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _use_backend(client: httpx.Client, backend: httpcore.NetworkBackend) -> None:
    """Route every connection of ``client`` (direct, and through environment proxies)
    through ``backend``. httpx has no public hook for this; the test with a trickling
    receiver fails if its internals move."""
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if pool is not None and hasattr(pool, "_network_backend"):
            pool._network_backend = backend
        elif transport is not None:
            log.warning("webhooks: cannot bound the total time of an attempt with %r", transport)


# What one attempt came to: ("success" | "failure" | "retry", error, Retry-After seconds)
_Result = tuple[str, str, float | None]


class WebhookSender:
    """Drains the outbox on its own thread; never touches the consumer.

    One notification never holds up the others: whatever goes wrong with it (a body that
    is not JSON, a secret that cannot sign, an unexpected exception) settles only it. An
    outcome the outbox cannot record (a full disk, a locked or read-only database) is kept
    in memory and recorded once the outbox works again; meanwhile that notification stays
    pending in the outbox and is not re-sent (after a restart it is: receivers deduplicate
    on ``Idempotency-Key``).
    """

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
        self._deadline = _AttemptDeadline()
        self._client = httpx.Client(follow_redirects=False)
        _use_backend(self._client, self._deadline)
        # outcomes decided but not yet written to the outbox: (id, webhook) -> the write
        self._unrecorded: dict[tuple[str, str], Callable[[], None]] = {}
        self._last_loop_error = -math.inf

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
            wait = 1.0
            try:
                self.drain_once()
                if not self._unrecorded:
                    nxt = self.outbox.next_due_at()
                    wait = 1.0 if nxt is None else min(1.0, max(0.0, nxt - self.clock()))
            except Exception:  # the sender must survive anything; the outbox keeps the work
                if time.monotonic() - self._last_loop_error >= 60:  # not once a second
                    self._last_loop_error = time.monotonic()
                    log.exception("webhook sender: unexpected error (retrying every second)")
            self._wake.wait(wait)
            self._wake.clear()

    def drain_once(self) -> int:
        """Attempt every due notification once; returns how many were attempted."""
        self._record_unrecorded()
        due = self.outbox.due(self.clock())
        attempted = 0
        for item in due:
            if self._stop.is_set():
                break
            if (item.id, item.webhook) in self._unrecorded:
                continue  # its outcome is known, just not written yet
            attempted += 1
            try:
                self._attempt(item)
            except Exception:  # a bug: this notification only; it stays pending
                log.exception("webhook %s: unexpected error with %s", item.webhook, item.id)
        return attempted

    def _attempt(self, item: Pending) -> None:
        started = time.perf_counter()
        now = self.clock()
        target = self.targets.get(item.webhook)
        if target is None:
            kind, error, wait = "failure", "webhook no longer configured", None
        else:
            try:
                kind, error, wait = self._send(item, target, now)
            except Exception as exc:  # never let one notification stop the others
                log.exception("webhook %s: unexpected error sending %s", target.name, item.id)
                kind, error, wait = "retry", f"unexpected error: {type(exc).__name__}", None
        write: Callable[[], None]
        if kind == "success":
            write = functools.partial(self.outbox.delivered, item.id, item.webhook)
        elif kind == "retry" and target is not None and not self._exhausted(item, target, now):
            wait = self._retry_wait(item, target, now, wait)
            write = functools.partial(self.outbox.retry, item.id, item.webhook, now + wait, error)
            log.info("webhook %s: %s, retrying %s in %.1fs", target.name, error, item.id, wait)
        else:
            if kind == "retry":
                log.warning(
                    "webhook %s: giving up on %s after %d attempts: %s",
                    item.webhook,
                    item.id,
                    item.attempts + 1,
                    error,
                )
            else:
                log.warning("webhook %s: notification %s failed: %s", item.webhook, item.id, error)
            kind = "failure"
            write = functools.partial(self.outbox.failed, item.id, item.webhook, error)
        self._record(item, write)
        self.on_outcome(item.webhook, kind, time.perf_counter() - started)

    def _send(self, item: Pending, target: WebhookTarget, now: float) -> _Result:
        try:
            payload = orjson.loads(item.body)
            if not isinstance(payload, dict):
                raise TypeError(f"a JSON {type(payload).__name__}, not an object")
            body = orjson.dumps(shape(target.format, payload))
        except Exception as exc:  # a poisoned row: it can never be sent
            return "failure", f"invalid notification body: {type(exc).__name__}: {exc}"[:300], None
        headers = {"Content-Type": "application/json", "Idempotency-Key": item.id}
        headers.update(target.headers())
        if target.secret:
            try:
                key = secret_key(target.secret)
            except ValueError as exc:  # refused at start-up; here only as a safety net
                return "retry", f"cannot sign: {exc}", None
            ts = int(now)
            headers["webhook-id"] = item.id
            headers["webhook-timestamp"] = str(ts)
            headers["webhook-signature"] = sign(key, item.id, ts, body)
        self._deadline.until = time.monotonic() + target.timeout_seconds
        try:
            # streamed: the status and headers are read, the body never is
            with self._client.stream(
                "POST", target.url, content=body, headers=headers, timeout=target.timeout_seconds
            ) as resp:
                status = resp.status_code
                after = resp.headers.get("Retry-After")
        except httpx.HTTPError as exc:
            return "retry", f"{type(exc).__name__}: {exc}"[:300], None
        finally:
            self._deadline.until = None
        if 200 <= status < 300 or (target.format == "airflow" and status == 409):
            return "success", "", None
        if status not in RETRYABLE:
            return "failure", f"HTTP {status}", None
        return "retry", f"HTTP {status}", retry_after(after, now)

    @staticmethod
    def _exhausted(item: Pending, target: WebhookTarget, now: float) -> bool:
        return (
            item.attempts + 1 >= target.max_attempts
            or now - item.created_at >= target.max_age_seconds
        )

    @staticmethod
    def _retry_wait(item: Pending, target: WebhookTarget, now: float, after: float | None) -> float:
        """The backoff, or ``Retry-After`` when longer, but never past the notification's
        ``max_age_seconds``: its last attempt then happens at that age."""
        wait = backoff(item.attempts, target.backoff_initial_seconds, target.backoff_max_seconds)
        if after is not None:
            wait = max(wait, after)
        return max(0.0, min(wait, item.created_at + target.max_age_seconds - now))

    def _record(self, item: Pending, write: Callable[[], None]) -> None:
        try:
            write()
        except Exception as exc:
            self._unrecorded[(item.id, item.webhook)] = write
            log.error(
                "webhook %s: cannot record the outcome of %s in the outbox (%s); it stays"
                " pending and is recorded once the outbox works again",
                item.webhook,
                item.id,
                exc,
            )

    def _record_unrecorded(self) -> None:
        for key, write in list(self._unrecorded.items()):
            try:
                write()
            except Exception:
                return  # the outbox still fails: try again on the next round
            del self._unrecorded[key]
            log.info("webhook %s: recorded the outcome of %s", key[1], key[0])
