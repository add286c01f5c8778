"""Delayed labels through the real daemon: a concept change without data drift."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from tests.helpers import WebhookServer, sample, wait_for
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import create_topic, produce


def model_stream(seed, n, start, concept_change=False):
    """x decides the prediction; labels follow the model, or the opposite rule after a change."""
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for i in range(start, start + n):
        x = float(rng.normal())
        s = 1 / (1 + np.exp(-3 * x))
        y = int(rng.random() < s)
        preds.append(
            {
                "model": "m",
                "id": f"p{i}",
                "features": {"x": x},
                "prediction": int(s > 0.5),
                "score": round(float(s), 5),
            }
        )
        labels.append({"model": "m", "id": f"p{i}", "label": 1 - y if concept_change else y})
    return preds, labels


def scored_reference(path: Path) -> None:
    """5,000 reference rows of one feature ``x`` with calibrated scores, predictions at 0.5
    and labels drawn from the scores (shared with ``test_versions``)."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 5000)
    s = 1 / (1 + np.exp(-3 * x))
    pd.DataFrame(
        {
            "x": x,
            "score": s,
            "prediction": (s > 0.5).astype(int),
            "label": (rng.random(5000) < s).astype(int),
        }
    ).to_csv(path, index=False)


@pytest.mark.usefixtures("kafka_library")
def test_concept_change_sends_exactly_one_performance_webhook(broker, topic, tmp_path, daemons):
    labels_topic = f"labels-{topic}"
    create_topic(broker, topic)
    create_topic(broker, labels_topic)
    scored_reference(tmp_path / "ref.csv")
    with WebhookServer() as hook:
        cfg = daemon_config(
            broker,
            tmp_path,
            topic,
            kafka={"label_topic": labels_topic},
            webhooks={"retrain": {"url": hook.url}},
        )
        model = cfg["models"][0]
        model.update(
            {
                "reference": str(tmp_path / "ref.csv"),
                "features": {"x": "numerical"},
                "window": {"events": 800},
                "webhooks": ["retrain"],
                "performance": {"metric": "accuracy", "max_drop": 0.1, "min_labels": 300},
            }
        )
        d = DaemonProcess(cfg, tmp_path)
        daemons.append(d.start())

        preds, labels = model_stream(1, 1000, 0)
        produce(broker, labels_topic, [orjson.dumps(x) for x in labels[:200]])  # labels first
        time.sleep(1)
        produce(broker, topic, [orjson.dumps(x) for x in preds])
        produce(broker, labels_topic, [orjson.dumps(x) for x in labels[200:]])
        produce(broker, labels_topic, [orjson.dumps(x) for x in labels[900:]])  # duplicates

        def labelled(n):
            return lambda: sample(d.metrics(), "driftwatch_window_labeled_events", model="m") == n

        wait_for(labelled(800), 30, what="800 labelled events in the window")
        text = d.metrics()
        cur = sample(text, "driftwatch_model_performance", model="m", metric="accuracy")
        ref = sample(text, "driftwatch_model_performance_reference", model="m", metric="accuracy")
        assert abs(cur - ref) < 0.06
        assert sample(text, "driftwatch_labels_total", model="m") == 1100
        assert sample(text, "driftwatch_labels_dropped_total", model="m", reason="duplicate") == 100
        assert sample(text, "driftwatch_model_label_coverage_ratio", model="m") == 1.0
        assert sample(text, "driftwatch_label_delay_seconds_count", model="m") >= 800
        assert hook.requests == []

        preds, labels = model_stream(2, 1000, 1000, concept_change=True)
        produce(broker, topic, [orjson.dumps(x) for x in preds])
        produce(broker, labels_topic, [orjson.dumps(x) for x in labels])
        unknown = [{"model": "m", "id": f"never-{i}", "label": 1} for i in range(7)]
        produce(broker, labels_topic, [orjson.dumps(x) for x in unknown])
        wait_for(lambda: hook.requests, 30, what="a webhook")
        time.sleep(3)
        text = d.metrics()
        assert sample(text, "driftwatch_model_performance", model="m", metric="accuracy") < 0.4
        assert sample(text, "driftwatch_feature_drift", model="m", feature="x") == 0
        assert sample(text, "driftwatch_alert_active", model="m", rule="performance") == 1
        # the 7 unknown ids wait; labels whose prediction already left the window are late
        wait_for(
            lambda: sample(d.metrics(), "driftwatch_labels_pending", model="m") == 7,
            10,
            what="7 pending labels",
        )
        bodies = [json.loads(r["body"]) for r in hook.requests]
        assert [(b["type"], b["rule"]) for b in bodies] == [("performance.degraded", "performance")]
        assert bodies[0]["performance"]["metric"] == "accuracy"
        assert bodies[0]["performance"]["current"] < bodies[0]["performance"]["reference"] - 0.1
        assert d.stop() == 0
