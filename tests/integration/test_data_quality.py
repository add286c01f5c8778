"""Rule data_quality through the real daemon and broker (CONTRACT section 9): a feature that
goes missing and a categorical feature with new categories fire one
``data_quality.degraded`` webhook naming each breach; the ratios are on /metrics."""

from __future__ import annotations

import json

import orjson

from tests.helpers import WebhookServer, events, sample, wait_for
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import counted, create_topic, produce


def test_missing_values_and_new_categories_fire_one_data_quality_webhook(
    broker, topic, tmp_path, daemons
):
    create_topic(broker, topic)
    with WebhookServer() as hook:
        cfg = daemon_config(broker, tmp_path, topic, webhooks={"ops": {"url": hook.url}})
        cfg["models"][0].update(
            {
                "webhooks": ["ops"],
                # drift off the table: only data quality may notify here
                "drift": {
                    "method": "psi",
                    "threshold": 50,
                    "categorical_threshold": 50,
                    "min_events": 200,
                    "share": 1.0,
                },
                "quality": {
                    "max_missing_ratio": 0.05,
                    "max_new_category_ratio": 0.05,
                    "min_events": 200,
                },
            }
        )
        d = DaemonProcess(cfg, tmp_path)
        daemons.append(d.start())
        clean = events(81, 600)
        produce(broker, topic, [orjson.dumps(e) for e in clean])
        wait_for(counted(d, 600), 30, what="600 clean events")
        assert hook.requests == []
        broken = events(82, 600, start=600)
        for i, e in enumerate(broken):
            if i % 4 == 0:
                del e["features"]["x3"]  # absent
            elif i % 4 == 1:
                e["features"]["x3"] = None  # null: missing too
            if i % 5 == 0:
                e["features"]["color"] = "ultraviolet"  # a category the reference never had
        produce(broker, topic, [orjson.dumps(e) for e in broken])
        wait_for(counted(d, 1200), 30, what="1200 events")
        wait_for(lambda: hook.requests, 20, what="the data_quality webhook")
        body = json.loads(hook.requests[0]["body"])
        assert (body["type"], body["rule"]) == ("data_quality.degraded", "data_quality")
        breaches = {(f["feature"], f["ratio"]) for f in body["data_quality"]["features"]}
        assert breaches == {("x3", "missing_ratio"), ("color", "new_category_ratio")}
        by = {(f["feature"], f["ratio"]): f for f in body["data_quality"]["features"]}
        # the window holds the last 1000 events: 400 clean, 600 broken
        assert by["x3", "missing_ratio"]["value"] == 300 / 1000
        assert by["color", "new_category_ratio"]["value"] == 120 / 1000
        text = d.metrics()
        assert sample(text, "driftwatch_feature_missing_ratio", model="m", feature="x3") == 0.3
        assert sample(text, "driftwatch_feature_missing_ratio", model="m", feature="x1") == 0.0
        assert (
            sample(text, "driftwatch_feature_new_category_ratio", model="m", feature="color")
            == 0.12
        )
        assert sample(text, "driftwatch_alert_active", model="m", rule="data_quality") == 1
        assert len(hook.requests) == 1
        assert d.stop() == 0
