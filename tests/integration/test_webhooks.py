"""Webhook delivery through the real daemon: outages, restarts, hanging and rejecting endpoints."""

from __future__ import annotations

import json
import time

import orjson
import pytest

from driftwatch.demo.broker import free_port
from tests.helpers import WebhookServer, events, http_get, sample, wait_for
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import counted, create_topic, produce

DRIFTED = ("x1", "x2", "x3", "color")


def config_with_hook(broker, tmp_path, topic, url, **hook):
    cfg = daemon_config(
        broker,
        tmp_path,
        topic,
        webhooks={
            "retrain": {
                "url": url,
                "timeout_seconds": 1,
                "backoff_initial_seconds": 0.2,
                "backoff_max_seconds": 1,
                **hook,
            }
        },
    )
    cfg["models"][0]["webhooks"] = ["retrain"]
    cfg["models"][0]["drift"]["share"] = 1.0  # only feature_drift fires...
    return cfg


def status(d):
    return json.loads(http_get(d.base + "/status")[1])


@pytest.mark.usefixtures("kafka_library")
def test_notification_survives_kill_and_is_delivered_once_after_restart(
    broker, topic, tmp_path, daemons
):
    create_topic(broker, topic)
    port = free_port()
    # 12 attempts at <= 1 s apart would give up within ~11 s of the first, which a loaded
    # CI machine can spend before the kill; the notifications must still be pending then.
    cfg = config_with_hook(
        broker, tmp_path, topic, f"http://127.0.0.1:{port}/hooks", max_attempts=1000
    )
    cfg["models"][0]["drift"]["share"] = 0.5  # ...here dataset_drift fires as well
    d = DaemonProcess(cfg, tmp_path)
    daemons.append(d.start())
    produce(broker, topic, [orjson.dumps(e) for e in events(41, 1200, shift=DRIFTED)])
    wait_for(counted(d, 1200), 30, what="1200 events")

    def retried_pending():
        pending = status(d)["webhooks"]["pending"]
        return pending if len(pending) == 2 and all(p["attempts"] >= 1 for p in pending) else None

    pending = wait_for(
        retried_pending, 20, what="two notifications retried while the endpoint is down"
    )
    assert all("ConnectError" in p["last_error"] for p in pending)
    assert len(status(d)["webhooks"]["failed"]) == 0
    time.sleep(2.5)  # offsets committed (every second), so the restart re-reads nothing
    d.kill()  # SIGKILL: no shutdown path runs

    with WebhookServer(port=port) as hook:
        d2 = DaemonProcess(cfg, tmp_path)
        daemons.append(d2.start())
        wait_for(lambda: len(hook.requests) == 2, 20, what="both notifications delivered")
        time.sleep(3)
        delivered = sorted(r["headers"]["Idempotency-Key"] for r in hook.requests)
        assert delivered == sorted(p["id"] for p in pending)
        assert sorted(json.loads(r["body"])["rule"] for r in hook.requests) == [
            "dataset_drift",
            "feature_drift",
        ]
        assert status(d2)["webhooks"] == {
            "pending_count": 0,
            "failed_count": 0,
            "pending": [],
            "failed": [],
        }
        assert (
            sample(
                d2.metrics(),
                "driftwatch_webhook_deliveries_total",
                webhook="retrain",
                outcome="success",
            )
            == 2
        )
        assert d2.stop() == 0


def test_hanging_endpoint_never_stalls_ingestion(broker, topic, tmp_path, daemons):
    create_topic(broker, topic)
    with WebhookServer(["hang"] * 10, hang_seconds=4) as hook:
        d = DaemonProcess(config_with_hook(broker, tmp_path, topic, hook.url), tmp_path)
        daemons.append(d.start())
        produce(broker, topic, [orjson.dumps(e) for e in events(51, 1000, shift=DRIFTED)])
        wait_for(lambda: hook.requests, 20, what="the first (hanging) delivery attempt")
        started = time.monotonic()
        for k in range(4):
            produce(
                broker, topic, [orjson.dumps(e) for e in events(52 + k, 500, start=1000 + 500 * k)]
            )
        wait_for(counted(d, 3000), 20, what="3000 events while the endpoint hangs")
        assert time.monotonic() - started < 15
        wait_for(
            lambda: (
                (
                    sample(
                        d.metrics(),
                        "driftwatch_webhook_deliveries_total",
                        webhook="retrain",
                        outcome="retry",
                    )
                    or 0
                )
                >= 1
            ),
            10,
            what="the timeout counted as a retry",
        )
        ids = {r["headers"]["Idempotency-Key"] for r in hook.requests}
        assert len(ids) == 1  # every attempt carries the same id
        assert d.stop() == 0


def test_rejected_notification_is_failed_not_retried_and_visible(broker, topic, tmp_path, daemons):
    create_topic(broker, topic)
    with WebhookServer([400]) as hook:
        d = DaemonProcess(config_with_hook(broker, tmp_path, topic, hook.url), tmp_path)
        daemons.append(d.start())
        produce(broker, topic, [orjson.dumps(e) for e in events(61, 1000, shift=DRIFTED)])
        failed = wait_for(lambda: status(d)["webhooks"]["failed"], 20, what="a failed notification")
        time.sleep(2)
        assert len(hook.requests) == 1
        assert [(f["last_error"], f["attempts"]) for f in failed] == [("HTTP 400", 1)]
        hooks = status(d)["webhooks"]
        assert (hooks["failed_count"], hooks["pending_count"]) == (1, 0)
        text = d.metrics()
        assert (
            sample(
                text, "driftwatch_webhook_deliveries_total", webhook="retrain", outcome="failure"
            )
            == 1
        )
        assert (
            sample(text, "driftwatch_webhook_delivery_duration_seconds_count", webhook="retrain")
            == 1
        )
        assert sample(text, "driftwatch_webhook_pending", webhook="retrain") == 0
        assert d.stop() == 0
