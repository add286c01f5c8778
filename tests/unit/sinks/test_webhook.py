from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from driftwatch.app import webhook_targets
from driftwatch.config import parse_config
from driftwatch.errors import ConfigError
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
    target = WebhookTarget(
        "retrain", url, fmt, secret, timeout, max_attempts, backoff_initial_seconds=0.05
    )
    s = WebhookSender(box, {"retrain": target}, lambda w, o, _s: outcomes.append((w, o)))
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


def config_with_webhook(tmp_path, name, hook):
    return parse_config(
        {
            "kafka": {"bootstrap_servers": ["x:1"], "prediction_topic": "p"},
            "webhooks": {name: hook},
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


def test_generic_body_is_the_contract_body():
    assert shape("generic", BODY) is BODY


def test_slack_message_follows_block_kit_limits():
    msg = shape("slack", BODY)
    assert msg["text"] == ":warning: Drift detected: model m, rule feature_drift"
    assert [b["type"] for b in msg["blocks"]] == ["header", "section", "section", "context"]
    header, fields, features, _ = msg["blocks"]
    assert header["text"]["type"] == "plain_text" and len(header["text"]["text"]) <= 150
    assert len(fields["fields"]) <= 10
    assert all(f["type"] == "mrkdwn" and len(f["text"]) <= 2000 for f in fields["fields"])
    assert "`x` PSI 0.3" in features["text"]["text"] and len(features["text"]["text"]) <= 3000


def test_airflow_dag_run_body_url_auth_and_409(tmp_path):
    assert shape("airflow", BODY) == {"dag_run_id": "n-1", "conf": BODY}
    cfg = config_with_webhook(
        tmp_path,
        "af",
        {
            "url": "http://127.0.0.1:1/",
            "format": "airflow",
            "dag_id": "retrain",
            "username_env": "AF_USER",
            "password_env": "AF_PASS",
        },
    )
    target = webhook_targets(cfg, {"AF_USER": "bot", "AF_PASS": "pw"})["af"]
    assert target.url == "http://127.0.0.1:1/api/v1/dags/retrain/dagRuns"
    assert target.headers() == {"Authorization": "Basic " + base64.b64encode(b"bot:pw").decode()}
    assert "pw" not in repr(target)
    with pytest.raises(
        ConfigError, match=r"webhooks\.af\.password_env: environment variable AF_PASS"
    ):
        webhook_targets(cfg, {"AF_USER": "bot"})
    with WebhookServer([409]) as srv:
        s, box, outcomes = sender(tmp_path, srv.url, fmt="airflow")
        enqueue(box)
        s.drain_once()
        assert outcomes == [("retrain", "success")]  # the dag run exists: delivered
        assert json.loads(srv.requests[0]["body"]) == {"dag_run_id": "n-1", "conf": BODY}


def test_github_repository_dispatch_shape_url_and_token(tmp_path):
    long_rule = dict(BODY, type="x" * 200)
    out = shape("github", long_rule)
    assert len(out["event_type"]) == 100
    out = shape("github", BODY)
    assert out["event_type"] == "driftwatch.drift.detected"
    assert set(out) == {"event_type", "client_payload"}
    assert len(out["client_payload"]) <= 10
    assert out["client_payload"]["drifted_features"] == BODY["drifted_features"]
    cfg = config_with_webhook(
        tmp_path,
        "gh",
        {
            "url": "https://api.github.com",
            "format": "github",
            "repository": "acme/models",
            "token_env": "GH_TOKEN",
        },
    )
    target = webhook_targets(cfg, {"GH_TOKEN": "ghp_secret"})["gh"]
    assert target.url == "https://api.github.com/repos/acme/models/dispatches"
    assert target.headers()["Authorization"] == "Bearer ghp_secret"
    assert target.headers()["Accept"] == "application/vnd.github+json"
