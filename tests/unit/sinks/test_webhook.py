from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from driftwatch.sinks.outbox import Outbox
from driftwatch.sinks.webhook import WebhookSender, WebhookTarget, retry_after, shape, sign
from tests.helpers import WebhookServer, wait_for

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
BODY = {
    "id": "n-1",
    "type": "drift.detected",
    "model": "m",
    "rule": "feature_drift",
    "occurred_at": "2026-11-22T06:00:00Z",
    "window": {"events": 10, "labeled_events": 0},
    "drifted_features": [{"feature": "x", "psi": 0.3, "ks_statistic": 0.2, "ks_pvalue": 1e-9}],
    "performance": None,
}


def sender(tmp_path, url, fmt="generic", secret=None, timeout=2.0, max_attempts=12):
    outcomes: list[tuple[str, str]] = []
    box = Outbox(tmp_path / "outbox.sqlite3")
    target = WebhookTarget("retrain", url, fmt, secret, timeout, max_attempts)
    s = WebhookSender(
        box, {"retrain": target}, lambda w, o: outcomes.append((w, o)), backoff_base=0.05
    )
    return s, box, outcomes


def enqueue(box, body=BODY):
    assert box.add(body["id"], "retrain", json.dumps(body).encode(), time.time())


def test_signature_verifies_with_the_standard_webhooks_library(tmp_path):
    with WebhookServer() as srv:
        s, box, outcomes = sender(tmp_path, srv.url, secret=SECRET)
        enqueue(box)
        s.drain_once()
        req = srv.requests[0]
        headers = {k.lower(): v for k, v in req["headers"].items()}
        Webhook(SECRET).verify(req["body"], headers)  # raises if it does not verify
        assert headers["idempotency-key"] == headers["webhook-id"] == "n-1"
        assert headers["content-type"] == "application/json"
        assert outcomes == [("retrain", "success")]
        assert box.listing() == []


def test_raw_secret_is_used_as_bytes():
    sig = sign(b"raw-secret", "id", 1, b"{}")
    assert (
        Webhook(base64.b64encode(b"raw-secret").decode()).verify(
            b"{}",
            {
                "webhook-id": "id",
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": sign(b"raw-secret", "id", int(time.time()), b"{}"),
            },
        )
        is not None
    )
    assert sig.startswith("v1,")


def test_500_500_200_is_delivered_once_with_the_same_id(tmp_path):
    with WebhookServer([500, 503, 200]) as srv:
        s, box, outcomes = sender(tmp_path, srv.url)
        enqueue(box)
        s.start()
        s.wake()
        wait_for(lambda: ("retrain", "success") in outcomes, 15, what="delivery")
        s.stop()
        ids = [r["headers"]["Idempotency-Key"] for r in srv.requests]
        assert ids == ["n-1", "n-1", "n-1"]
        assert outcomes == [("retrain", "retry"), ("retrain", "retry"), ("retrain", "success")]
        assert box.listing() == []


def test_400_is_not_retried_and_is_kept_as_failed(tmp_path):
    with WebhookServer([400]) as srv:
        s, box, outcomes = sender(tmp_path, srv.url)
        enqueue(box)
        s.drain_once()
        time.sleep(0.2)
        s.drain_once()
        assert len(srv.requests) == 1
        assert outcomes == [("retrain", "failure")]
        [item] = box.listing()
        assert (item.status, item.last_error) == ("failed", "HTTP 400")


def test_hanging_endpoint_times_out_and_is_retried(tmp_path):
    with WebhookServer(["hang"], hang_seconds=2.0) as srv:
        s, box, outcomes = sender(tmp_path, srv.url, timeout=0.3)
        enqueue(box)
        started = time.monotonic()
        s.drain_once()
        assert time.monotonic() - started < 1.5
        assert outcomes == [("retrain", "retry")]
        assert "Timeout" in box.listing()[0].last_error


def test_retry_after_is_honoured(tmp_path):
    with WebhookServer([(429, {"Retry-After": "30"})]) as srv:
        s, box, _ = sender(tmp_path, srv.url)
        enqueue(box)
        before = time.time()
        s.drain_once()
        [item] = box.listing()
        assert item.next_attempt_at >= before + 29
    assert (retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 0.0) or 0) > 1e9
    assert retry_after("soon", 0.0) is None


def test_gives_up_after_max_attempts(tmp_path):
    with WebhookServer([500, 500]) as srv:
        s, box, outcomes = sender(tmp_path, srv.url, max_attempts=2)
        enqueue(box)
        s.drain_once()
        wait_for(s.drain_once, 5, interval=0.05, what="second attempt")
        assert outcomes == [("retrain", "retry"), ("retrain", "failure")]
        assert box.listing()[0].status == "failed"


def test_outbox_survives_reopening_and_ignores_duplicates(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    enqueue(box)
    assert not box.add("n-1", "retrain", b"{}", time.time())
    box.close()
    again = Outbox(tmp_path / "o.sqlite3")
    assert [i.id for i in again.due(time.time() + 1)] == ["n-1"]
    assert again.pending_counts() == {"retrain": 1}


@pytest.mark.parametrize("fmt", ["generic", "slack", "airflow", "github"])
def test_formats_reshape_the_same_content(fmt):
    out = shape(fmt, BODY)
    if fmt == "generic":
        assert out == BODY
    elif fmt == "airflow":
        assert out == {"dag_run_id": "n-1", "conf": BODY}
    elif fmt == "github":
        assert out["event_type"] == "driftwatch.drift.detected"
        assert len(out["client_payload"]) <= 10
    else:
        assert "credit" not in out["text"] and "`m`" in out["text"]
        assert out["blocks"][0]["type"] == "section"
