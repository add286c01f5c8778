"""Model versions through the real daemon and broker (CONTRACT section 9): a 50/50 canary
whose new version is worse recommends a rollback once; one whose new version is better
notifies nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import orjson

from tests.helpers import WebhookServer, http_get, sample, wait_for
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import create_topic, produce
from tests.integration.test_labels import scored_reference

MIN_LABELS = 200


def canary(
    seed: int, n: int, start: int, accuracy: dict[str, float]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Predictions split evenly over the versions of ``accuracy``, labels right that often."""
    rng = np.random.default_rng(seed)
    names = list(accuracy)
    preds, labels = [], []
    for i in range(start, start + n):
        v = names[i % len(names)]
        x = float(rng.normal())
        s = 1 / (1 + np.exp(-3 * x))
        pred = int(s > 0.5)
        preds.append(
            {
                "model": "m",
                "id": f"p{i}",
                "features": {"x": x},
                "prediction": pred,
                "score": round(float(s), 5),
                "model_version": v,
            }
        )
        label = pred if rng.random() < accuracy[v] else 1 - pred
        labels.append({"model": "m", "id": f"p{i}", "label": label})
    return preds, labels


def start_daemon(broker, topic, tmp_path, daemons, hook) -> tuple[DaemonProcess, str]:
    labels_topic = f"labels-{topic}"
    create_topic(broker, topic)
    create_topic(broker, labels_topic)
    scored_reference(tmp_path / "ref.csv")
    cfg = daemon_config(
        broker,
        tmp_path,
        topic,
        kafka={"label_topic": labels_topic},
        webhooks={"deploy": {"url": hook.url}},
    )
    cfg["models"][0].update(
        {
            "reference": str(tmp_path / "ref.csv"),
            "features": {"x": "numerical"},
            "window": {"events": 1200},
            "webhooks": ["deploy"],
            "versions": {
                "max_versions": 5,
                "regression": {"metric": "accuracy", "max_drop": 0.1, "min_labels": MIN_LABELS},
            },
        }
    )
    d = DaemonProcess(cfg, tmp_path)
    daemons.append(d.start())
    return d, labels_topic


def run_canary(broker, topic, labels_topic, new_accuracy: float) -> None:
    """v1 alone, then a 50/50 split between v1 and v2; every prediction labelled."""
    preds, labels = canary(1, 200, 0, {"v1": 0.9})
    more_preds, more_labels = canary(2, 1000, 200, {"v1": 0.9, "v2": new_accuracy})
    produce(broker, topic, [orjson.dumps(x) for x in preds])
    time.sleep(1.5)  # v1 is first seen first
    produce(broker, topic, [orjson.dumps(x) for x in more_preds])
    produce(broker, labels_topic, [orjson.dumps(x) for x in labels + more_labels])


def versions_status(d: DaemonProcess) -> dict[str, dict[str, Any]]:
    code, body = http_get(d.base + "/status")
    evaluation = json.loads(body)["models"]["m"]["evaluation"] if code == 200 else None
    return {} if evaluation is None else {v["version"]: v for v in evaluation["versions"]}


def all_labelled(d: DaemonProcess):
    def check() -> bool:
        by = versions_status(d)
        return set(by) == {"v1", "v2"} and all(
            v["labeled_events"] == v["events"] for v in by.values()
        )

    return check


def test_worse_canary_recommends_one_rollback(broker, topic, tmp_path, daemons):
    with WebhookServer() as hook:
        d, labels_topic = start_daemon(broker, topic, tmp_path, daemons, hook)
        run_canary(broker, topic, labels_topic, new_accuracy=0.55)
        wait_for(lambda: hook.requests, 30, what="a rollback webhook")
        wait_for(all_labelled(d), 15, what="every prediction labelled")
        time.sleep(3)  # no second notification follows
        bodies = [json.loads(r["body"]) for r in hook.requests]
        assert [(b["type"], b["rule"]) for b in bodies] == [
            ("rollback.recommended", "version_regression")
        ]
        block = bodies[0]["versions"]
        assert block["newest"]["version"] == "v2" and block["previous"]["version"] == "v1"
        for v in block.values():
            assert v["metric"] == "accuracy" and v["labeled_events"] >= MIN_LABELS
        assert block["newest"]["value"] < block["previous"]["value"] - 0.1
        text = d.metrics()
        assert sample(text, "driftwatch_alert_active", model="m", rule="version_regression") == 1
        assert sample(text, "driftwatch_version_window_events", model="m", version="v1") == 700
        assert sample(text, "driftwatch_version_window_events", model="m", version="v2") == 500
        v2 = sample(
            text, "driftwatch_version_performance", model="m", version="v2", metric="accuracy"
        )
        assert v2 < 0.7
        assert sample(text, "driftwatch_version_prediction_psi", model="m", version="v2") < 0.1
        assert d.stop() == 0


def test_better_canary_notifies_nothing(broker, topic, tmp_path, daemons):
    with WebhookServer() as hook:
        d, labels_topic = start_daemon(broker, topic, tmp_path, daemons, hook)
        run_canary(broker, topic, labels_topic, new_accuracy=0.97)
        wait_for(all_labelled(d), 30, what="every prediction labelled")
        time.sleep(3)  # a few more evaluations
        by = versions_status(d)
        assert by["v2"]["performance"]["accuracy"] > by["v1"]["performance"]["accuracy"]
        assert by["v2"]["labeled_events"] >= MIN_LABELS
        assert hook.requests == []
        text = d.metrics()
        assert sample(text, "driftwatch_alert_active", model="m", rule="version_regression") == 0
        assert d.stop() == 0
