"""The webhook sender against hostile receivers and poisoned outbox rows (real HTTP on
127.0.0.1): every attempt is bounded in time and memory, and one bad notification never
holds up the others."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from driftwatch.app import webhook_targets
from driftwatch.config import parse_config
from driftwatch.errors import ConfigError
from driftwatch.sinks.outbox import Outbox
from driftwatch.sinks.webhook import WebhookSender, WebhookTarget, retry_after
from tests.helpers import WebhookServer

BODY: dict[str, Any] = {
    "id": "n-1",
    "type": "drift.detected",
    "model": "m",
    "rule": "feature_drift",
    "occurred_at": "2026-11-22T06:00:00Z",
    "window": {"events": 10, "labeled_events": 0},
    "drifted_features": [],
    "performance": None,
}


@contextmanager
def raw_server(respond: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that reads a request head and hands the socket to
    ``respond``; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                respond(conn)
            except OSError:
                pass

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        stop.set()
        t.join()
        listener.close()


def make_sender(
    tmp_path: Path, url: str, **target_kw: object
) -> tuple[WebhookSender, Outbox, list[tuple[str, str]]]:
    outcomes: list[tuple[str, str]] = []
    box = Outbox(tmp_path / "o.sqlite3")
    target = WebhookTarget("retrain", url, **target_kw)  # type: ignore[arg-type]
    s = WebhookSender(box, {"retrain": target}, lambda w, o, _s: outcomes.append((w, o)))
    return s, box, outcomes


def enqueue(box: Outbox, i: str = "n-1", body: bytes | None = None, at: float | None = None):
    box.add(
        i,
        "retrain",
        json.dumps(dict(BODY, id=i)).encode() if body is None else body,
        time.time() if at is None else at,
    )


def drain_within(s: WebhookSender, seconds: float) -> float:
    """Run one drain on a thread; fail if it does not finish in ``seconds``."""
    started = time.monotonic()
    t = threading.Thread(target=s.drain_once, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"one attempt took more than {seconds}s"
    return time.monotonic() - started


def test_a_receiver_trickling_its_answer_is_cut_at_the_timeout(tmp_path):
    """Each byte arrives well within the read timeout; the attempt as a whole must not."""

    def trickle(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    with raw_server(trickle) as url:
        s, box, outcomes = make_sender(tmp_path, url, timeout_seconds=1.0)
        enqueue(box)
        assert drain_within(s, 4) < 2.5
        assert outcomes == [("retrain", "retry")]
        [item] = box.listing()
        assert item.status == "pending" and "Timeout" in (item.last_error or "")


def test_the_timeout_also_bounds_attempts_through_an_environment_proxy(tmp_path, monkeypatch):
    def trickle(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    with raw_server(trickle) as proxy:
        for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.removesuffix("/hook"))
        s, box, outcomes = make_sender(
            tmp_path, "http://receiver.invalid/hook", timeout_seconds=1.0
        )
        enqueue(box)
        assert drain_within(s, 4) < 2.5
        assert outcomes == [("retrain", "retry")]
        [item] = box.listing()
        assert "Timeout" in (item.last_error or "")  # it reached the proxy (no DNS error)


def test_a_huge_response_body_is_not_read(tmp_path):
    def flood(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        chunk = b"x" * 65536
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            conn.sendall(chunk)
            time.sleep(0.005)

    with raw_server(flood) as url:
        s, box, outcomes = make_sender(tmp_path, url, timeout_seconds=5.0)
        enqueue(box)
        assert drain_within(s, 4) < 2
        assert outcomes == [("retrain", "success")]
        assert box.listing() == []


@pytest.mark.parametrize(
    "value",
    [
        str(10**12),
        "9" * 400,
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ],
)
def test_a_huge_retry_after_cannot_park_a_notification_past_its_max_age(tmp_path, value):
    with WebhookServer([(503, {"Retry-After": value})]) as srv:
        s, box, outcomes = make_sender(
            tmp_path, srv.url, max_age_seconds=3600.0, backoff_max_seconds=60.0
        )
        created = time.time()
        enqueue(box, at=created)
        s.drain_once()
        assert outcomes == [("retrain", "retry")]
        [item] = box.listing()
        assert item.status == "pending"
        assert item.next_attempt_at <= created + 3600.0 + 1


@pytest.mark.parametrize("value", ["-5", "soon", "1e3", "\xb2", "  ", "0x10"])
def test_a_garbage_retry_after_falls_back_to_backoff(tmp_path, value):
    with WebhookServer([(503, {"Retry-After": value})]) as srv:
        s, box, outcomes = make_sender(
            tmp_path, srv.url, backoff_initial_seconds=2.0, backoff_max_seconds=2.0
        )
        before = time.time()
        enqueue(box)
        s.drain_once()
        assert outcomes == [("retrain", "retry")]
        [item] = box.listing()
        assert before <= item.next_attempt_at <= time.time() + 2.0 + 0.1


def test_retry_after_parsing_is_total():
    assert retry_after("30", 0.0) == 30.0
    assert retry_after(" 30 ", 0.0) == 30.0
    for bad in ("-5", "\xb2", "\u0661\u0662", "1e3", "3.5", "", None, "Wed, 21 Oct 99999 07:28:00"):
        assert retry_after(bad, 0.0) is None, bad
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 2e9) == 0.0  # in the past


def test_retry_after_is_a_floor_over_the_backoff(tmp_path, monkeypatch):
    """``Retry-After: 0`` from an overloaded receiver must not make the sender spin
    through its attempts: the backoff still applies."""
    monkeypatch.setattr("driftwatch.sinks.webhook.random.uniform", lambda lo, hi: hi)
    with WebhookServer([(503, {"Retry-After": "0"}), (503, {"Retry-After": "3"})]) as srv:
        s, box, _ = make_sender(tmp_path, srv.url, backoff_initial_seconds=2.0)
        before = time.time()
        enqueue(box)
        s.drain_once()
        [item] = box.listing()
        assert item.next_attempt_at >= before + 2.0
        s.clock = lambda: item.next_attempt_at
        s.drain_once()
        [item] = box.listing()
        assert item.next_attempt_at >= before + 2.0 + 4.0  # backoff(1) = 4 > Retry-After 3


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        ("generic", b"not json{"),
        ("generic", b"\xff\xfe"),
        ("airflow", b"[1, 2]"),
        ("slack", b"{}"),
        ("github", b'{"id": 1}'),
    ],
)
def test_a_poisoned_outbox_row_is_marked_failed_and_the_rest_is_sent(tmp_path, fmt, body):
    with WebhookServer() as srv:
        s, box, outcomes = make_sender(tmp_path, srv.url, format=fmt)
        now = time.time()
        enqueue(box, "bad", body=body, at=now - 10)  # first in line
        enqueue(box, "n-2", at=now)
        s.drain_once()
        assert sorted(outcomes) == [("retrain", "failure"), ("retrain", "success")]
        [item] = box.listing()
        assert (item.id, item.status) == ("bad", "failed")
        assert (item.last_error or "").startswith("invalid notification body")
        assert [r["headers"]["Idempotency-Key"] for r in srv.requests] == ["n-2"]


def test_an_unexpected_error_in_one_attempt_does_not_block_the_queue(tmp_path):
    """A header httpx cannot encode (a non-ASCII token) raises something that is not an
    httpx error: that notification is retried later; the next one is still sent."""
    with WebhookServer() as srv:
        box = Outbox(tmp_path / "o.sqlite3")
        targets = {
            "bad": WebhookTarget(
                "bad", srv.url, token="t\u00f6k\u0113n", backoff_initial_seconds=60
            ),
            "good": WebhookTarget("good", srv.url),
        }
        outcomes: list[tuple[str, str]] = []
        s = WebhookSender(box, targets, lambda w, o, _s: outcomes.append((w, o)))
        now = time.time()
        box.add("n-1", "bad", json.dumps(BODY).encode(), now - 1)
        box.add("n-1", "good", json.dumps(BODY).encode(), now)
        s.drain_once()
        s.drain_once()  # "bad" is not due again yet
        assert sorted(outcomes) == [("bad", "retry"), ("good", "success")]
        [item] = box.listing()
        assert (item.webhook, item.status, item.attempts) == ("bad", "pending", 1)


def test_tokens_that_cannot_be_a_header_are_config_errors(tmp_path):
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": ["x:1"], "prediction_topic": "p"},
            "webhooks": {"gh": {"url": "https://api.github.com", "token_env": "GH_TOKEN"}},
            "models": [
                {
                    "name": "m",
                    "reference": "r.csv",
                    "window": {"events": 5},
                    "features": {"x": "numerical"},
                }
            ],
        },
        tmp_path,
    )
    for token in ("ghp_abc\n", "ghp_\u00e9t\u00e9", "ghp abc\r\nX-Evil: 1"):
        with pytest.raises(ConfigError) as exc:
            webhook_targets(cfg, {"GH_TOKEN": token})
        [problem] = exc.value.problems
        assert problem.startswith("webhooks.gh.token_env: ") and token not in problem
    assert webhook_targets(cfg, {"GH_TOKEN": "ghp_ok-._~+/="})["gh"].token == "ghp_ok-._~+/="


def test_a_basic_auth_user_name_with_a_colon_is_a_config_error(tmp_path):
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": ["x:1"], "prediction_topic": "p"},
            "webhooks": {
                "af": {
                    "url": "http://airflow:8080",
                    "format": "airflow",
                    "dag_id": "d",
                    "username_env": "AF_USER",
                    "password_env": "AF_PASS",
                }
            },
            "models": [
                {
                    "name": "m",
                    "reference": "r.csv",
                    "window": {"events": 5},
                    "features": {"x": "numerical"},
                }
            ],
        },
        tmp_path,
    )
    with pytest.raises(ConfigError, match=r"webhooks\.af\.username_env: .*':'"):
        webhook_targets(cfg, {"AF_USER": "bot:admin", "AF_PASS": "pw"})
    # a password may hold anything: it is base64-encoded with the user name
    assert webhook_targets(cfg, {"AF_USER": "bot", "AF_PASS": "p:w w\u00e9"})["af"].password
