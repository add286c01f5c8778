"""Performance estimated without labels through the real daemon and broker (CONTRACT
section 10): no label topic at all; scores squeezed towards the decision boundary
(covariate shift) fire one ``performance.degraded`` webhook with ``"estimated": true``."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pandas as pd
from bench.cbpe_data import SHIFTS, sample

from tests.helpers import WebhookServer, wait_for
from tests.helpers import sample as metric_sample
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import counted, create_topic, produce


def scored(seed: int, n: int, start: int, shift_index: int) -> list[bytes]:
    s = sample(np.random.default_rng(seed), n, SHIFTS[shift_index])
    return [
        orjson.dumps(
            {
                "model": "m",
                "id": f"p{start + i}",
                "features": {"x1": float(s.x1[i]), "x2": float(s.x2[i])},
                "prediction": int(s.prediction[i]),
                "score": float(s.score[i]),
            }
        )
        for i in range(n)
    ]


def test_estimated_accuracy_drop_notifies_without_any_label_topic(broker, topic, tmp_path, daemons):
    create_topic(broker, topic)
    ref = sample(np.random.default_rng(0), 20_000)
    pd.DataFrame(
        {
            "x1": ref.x1,
            "x2": ref.x2,
            "score": ref.score,
            "prediction": ref.prediction,
            "label": ref.label,
        }
    ).to_csv(tmp_path / "ref.csv", index=False)
    with WebhookServer() as hook:
        cfg = daemon_config(broker, tmp_path, topic, webhooks={"ops": {"url": hook.url}})
        assert "label_topic" not in cfg["kafka"]
        cfg["models"][0].update(
            {
                "reference": str(tmp_path / "ref.csv"),
                "features": {"x1": "numerical", "x2": "numerical"},
                "webhooks": ["ops"],
                # only the estimate may notify here
                "drift": {"method": "psi", "threshold": 50, "min_events": 200, "share": 1.0},
                "performance": {
                    "metric": "accuracy",
                    "max_drop": 0.05,
                    "min_labels": 500,
                    "estimate": True,
                },
            }
        )
        d = DaemonProcess(cfg, tmp_path)
        daemons.append(d.start())
        produce(broker, topic, scored(1, 1000, 0, 0))  # the reference's distribution
        wait_for(counted(d, 1000), 30, what="1000 scored events")
        before = wait_for(
            lambda: metric_sample(
                d.metrics(), "driftwatch_model_performance_estimated", model="m", metric="accuracy"
            ),
            15,
            what="an estimated accuracy",
        )
        assert before is not None and before > 0.72
        assert hook.requests == []
        produce(broker, topic, scored(2, 1000, 1000, 6))  # squeezed towards the boundary
        wait_for(counted(d, 2000), 30, what="2000 scored events")
        wait_for(lambda: hook.requests, 20, what="the estimated performance webhook")
        body = json.loads(hook.requests[0]["body"])
        assert (body["type"], body["rule"]) == ("performance.degraded", "estimated_performance")
        perf = body["performance"]
        assert perf["estimated"] is True and perf["metric"] == "accuracy"
        assert perf["reference"] - perf["current"] > 0.05
        assert body["window"]["labeled_events"] == 0
        text = d.metrics()
        assert (
            metric_sample(text, "driftwatch_alert_active", model="m", rule="estimated_performance")
            == 1
        )
        assert len(hook.requests) == 1
        assert d.stop() == 0
