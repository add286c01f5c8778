"""`driftwatch run` end to end: a real Tansu broker, a real webhook receiver, the real process."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import time
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from standardwebhooks.webhooks import Webhook

from driftwatch.sources.kafka import JsonProducer
from tests.helpers import WebhookServer, events, http_get, sample, samples, wait_for
from tests.integration.conftest import DaemonProcess, daemon_config

SECRET = "whsec_" + base64.b64encode(b"integration-test-secret-32bytes!").decode()


def produce(broker, topic, values, key=b"m", **options):
    producer = JsonProducer([broker.bootstrap], **options)
    for v in values:
        producer._producer.send(topic, key=key, value=v)
    producer.flush()
    producer.close()


def create_topic(broker, topic, partitions=3):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.close()


def counted(daemon, n):
    return lambda: sample(daemon.metrics(), "driftwatch_events_total", model="m") == n


def evaluated_after(daemon, t):
    return lambda: (
        (sample(daemon.metrics(), "driftwatch_last_evaluation_timestamp_seconds", model="m") or 0)
        > t
    )


@pytest.mark.usefixtures("kafka_library")
def test_stationary_then_two_features_drift_one_signed_webhook(broker, topic, tmp_path, daemons):
    create_topic(broker, topic)
    with WebhookServer() as hook:
        cfg = daemon_config(
            broker,
            tmp_path,
            topic,
            webhooks={
                "retrain": {"url": hook.url, "secret_env": "DW_SECRET", "timeout_seconds": 2}
            },
        )
        cfg["models"][0]["webhooks"] = ["retrain"]
        d = DaemonProcess(cfg, tmp_path, env={"DW_SECRET": SECRET})
        daemons.append(d.start())

        produce(broker, topic, [orjson.dumps(e) for e in events(11, 1500)])
        wait_for(counted(d, 1500), 30, what="1500 events counted")
        wait_for(evaluated_after(d, time.time() + 0.1), 10, what="an evaluation")
        text = d.metrics()
        for feature in ("x1", "x2", "x3", "color"):
            assert sample(text, "driftwatch_feature_psi", model="m", feature=feature) < 0.1
            assert sample(text, "driftwatch_feature_drift", model="m", feature=feature) == 0
        assert sample(text, "driftwatch_window_events", model="m") == 1000
        time.sleep(1.5)
        assert hook.requests == []

        shifted = events(12, 1500, shift=("x2", "color"), start=1500)
        produce(broker, topic, [orjson.dumps(e) for e in shifted])
        wait_for(counted(d, 3000), 30, what="3000 events counted")
        wait_for(evaluated_after(d, time.time() + 0.1), 10, what="an evaluation")
        wait_for(lambda: hook.requests, 15, what="a webhook")
        time.sleep(3)  # several more evaluations: still exactly one notification
        text = d.metrics()
        drifted = {
            f
            for f in ("x1", "x2", "x3", "color")
            if sample(text, "driftwatch_feature_drift", model="m", feature=f) == 1
        }
        assert drifted == {"x2", "color"}
        for f in ("x2", "color"):
            assert sample(text, "driftwatch_feature_psi", model="m", feature=f) >= 0.2
        for f in ("x1", "x3"):
            assert sample(text, "driftwatch_feature_psi", model="m", feature=f) < 0.2
        assert sample(text, "driftwatch_alert_active", model="m", rule="feature_drift") == 1
        assert sample(text, "driftwatch_model_drifted_features_ratio", model="m") == 0.5

        assert len(hook.requests) == 1
        req = hook.requests[0]
        headers = {k.lower(): v for k, v in req["headers"].items()}
        Webhook(SECRET).verify(req["body"], headers)
        body = json.loads(req["body"])
        assert body["type"] == "drift.detected" and body["rule"] == "feature_drift"
        assert {f["feature"] for f in body["drifted_features"]} == {"x2", "color"}
        assert headers["idempotency-key"] == body["id"]
        assert (
            sample(
                text, "driftwatch_webhook_deliveries_total", webhook="retrain", outcome="success"
            )
            == 1
        )
        assert d.stop() == 0


def malformed_records():
    good = [orjson.dumps(e) for e in events(21, 400)]
    bad = {
        "invalid_json": b"{this is not json",
        "not_an_object": b"[1, 2, 3]",
        "missing_field": orjson.dumps({"model": "m", "features": {}, "prediction": 1}),
        "unknown_model": orjson.dumps(
            {"model": "nobody", "id": "1", "features": {}, "prediction": 1}
        ),
        "invalid_type": orjson.dumps(
            {"model": "m", "id": "2", "features": {"x1": "high"}, "prediction": 1}
        ),
        "non_finite": b'{"model": "m", "id": "3", "features": {"x1": NaN}, "prediction": 1}',
        "too_large": orjson.dumps(
            {"model": "m", "id": "4", "features": {}, "prediction": 1, "blob": "x" * 2_000_000}
        ),
    }
    stream = []
    for i, g in enumerate(good):
        stream.append(g)
        if i % 50 == 25:
            stream.extend(bad.values())
    return stream, len(good), dict.fromkeys(bad, 8)


@pytest.mark.usefixtures("kafka_library")
def test_malformed_records_are_counted_dead_lettered_and_skipped(broker, topic, tmp_path, daemons):
    dlq = f"dlq-{topic}"
    create_topic(broker, topic, partitions=1)
    create_topic(broker, dlq, partitions=1)
    cfg = daemon_config(broker, tmp_path, topic, kafka={"dead_letter_topic": dlq})
    d = DaemonProcess(cfg, tmp_path)
    daemons.append(d.start())
    stream, n_good, expected_invalid = malformed_records()
    produce(broker, topic, stream, max_request_size=8_000_000)
    wait_for(counted(d, n_good), 40, what=f"{n_good} valid events")

    def invalid_counts():
        s = samples(d.metrics())
        got = {
            r: s.get(("driftwatch_invalid_events_total", (("reason", r),)))
            for r in expected_invalid
        }
        return got == expected_invalid

    wait_for(invalid_counts, 20, what="invalid counts")
    d.alive()
    wait_for(evaluated_after(d, time.time() + 0.1), 10, what="an evaluation")
    assert sample(d.metrics(), "driftwatch_window_events", model="m") == n_good

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=10_000_000,
    )
    consumer.assign([TopicPartition(dlq, 0)])
    consumer.seek_to_beginning()
    got: list[Any] = []
    deadline = time.monotonic() + 30
    while len(got) < sum(expected_invalid.values()) and time.monotonic() < deadline:
        for recs in consumer.poll(500).values():
            got.extend(recs)
    consumer.close()
    reasons: dict[str, int] = {}
    for r in got:
        reason = dict(r.headers)["driftwatch-reason"].decode()
        reasons[reason] = reasons.get(reason, 0) + 1
    assert reasons == expected_invalid
    assert d.stop() == 0


def test_endpoints_promtool_and_state_across_restart(broker, topic, tmp_path, daemons):
    create_topic(broker, topic)
    cfg = daemon_config(broker, tmp_path, topic)
    d = DaemonProcess(cfg, tmp_path)
    daemons.append(d.start())
    assert http_get(d.base + "/healthz")[0] == 200
    produce(broker, topic, [orjson.dumps(e) for e in events(31, 300)])
    wait_for(counted(d, 300), 30, what="300 events")
    wait_for(evaluated_after(d, time.time() + 0.1), 10, what="an evaluation")

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    res = subprocess.run(
        [promtool, "check", "metrics"], input=d.metrics().encode(), capture_output=True
    )
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()

    code, body = http_get(d.base + "/status")
    status = json.loads(body)
    assert code == 200 and status["ready"] is True
    assert status["models"]["m"]["evaluation"]["window"]["events"] == 300
    assert status["models"]["m"]["events_total"] == 300
    assert http_get(d.base + "/nope")[0] == 404

    assert d.stop(signal.SIGINT) == 0  # final checkpoint and commit
    d2 = DaemonProcess(cfg, tmp_path)
    daemons.append(d2.start())
    assert sample(d2.metrics(), "driftwatch_events_total", model="m") == 300  # restored
    produce(broker, topic, [orjson.dumps(e) for e in events(32, 200, start=300)])
    wait_for(counted(d2, 500), 30, what="200 new events on top of the restored 300")
    wait_for(evaluated_after(d2, time.time() + 0.1), 10, what="an evaluation")
    time.sleep(1)
    text = d2.metrics()
    assert sample(text, "driftwatch_events_total", model="m") == 500  # nothing re-read
    assert sample(text, "driftwatch_window_events", model="m") == 500
    assert d2.stop() == 0
