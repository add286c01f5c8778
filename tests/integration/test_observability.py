"""End to end with a real Prometheus: it scrapes the daemon, evaluates the shipped rules,
and the dashboards' metrics are all exported."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import orjson

from tests.helpers import (
    WebhookServer,
    events,
    http_get,
    reference_frame,
    samples,
    start_prometheus,
    wait_for,
)
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import counted, create_topic, produce
from tests.unit.test_ops_kit import dashboard_metric_names

ROOT = Path(__file__).resolve().parents[2]


def query(base: str, promql: str) -> list[dict[str, object]]:
    code, body = http_get(base + "/api/v1/query?query=" + urllib.parse.quote(promql))
    assert code == 200, body
    result: list[dict[str, object]] = json.loads(body)["data"]["result"]
    return result


def test_prometheus_scrapes_drift_and_the_alert_goes_pending(broker, topic, tmp_path, daemons):
    labels_topic = f"labels-{topic}"
    create_topic(broker, topic)
    create_topic(broker, labels_topic)
    ref = reference_frame()
    ref["label"] = ref["prediction"]
    ref.to_csv(tmp_path / "ref.csv", index=False)
    with WebhookServer() as hook:
        cfg = daemon_config(
            broker,
            tmp_path,
            topic,
            kafka={"label_topic": labels_topic},
            webhooks={"retrain": {"url": hook.url}},
        )
        cfg["models"][0].update(
            {
                "reference": str(tmp_path / "ref.csv"),
                "webhooks": ["retrain"],
                "segments": ["color"],
                "performance": {"metric": "accuracy", "min_labels": 50},
            }
        )
        d = DaemonProcess(cfg, tmp_path)
        daemons.append(d.start())
        prom, base = start_prometheus(
            tmp_path, f"127.0.0.1:{d.port}", ROOT / "config/prometheus/alerts.yml"
        )
        try:
            stationary = [{**e, "model_version": "v1"} for e in events(71, 1000)]
            produce(broker, topic, [orjson.dumps(e) for e in stationary])
            produce(
                broker,
                labels_topic,
                [
                    orjson.dumps({"model": "m", "id": e["id"], "label": e["prediction"]})
                    for e in stationary[:600]
                ],
            )
            wait_for(counted(d, 1000), 30, what="1000 events")
            shifted = [
                {**e, "model_version": "v2"}
                for e in events(72, 1000, shift=("x2", "color"), start=1000)
            ]
            produce(broker, topic, [orjson.dumps(e) for e in shifted])
            produce(  # labels for v2 too: the window ends up holding only v2's events
                broker,
                labels_topic,
                [
                    orjson.dumps({"model": "m", "id": e["id"], "label": e["prediction"]})
                    for e in shifted[:300]
                ],
            )
            produce(broker, topic, [b"not json"])
            wait_for(counted(d, 2000), 30, what="2000 events")
            wait_for(lambda: hook.requests, 20, what="the drift webhook")

            exported = {name for name, _ in samples(d.metrics())}
            missing = dashboard_metric_names() - exported - {"up"}
            assert not missing, f"dashboards query metrics the daemon does not export: {missing}"

            def psi_above_threshold():
                r = query(base, 'driftwatch_feature_psi{model="m", feature="x2"}')
                return r and float(r[0]["value"][1]) >= 0.2  # type: ignore[index]

            wait_for(psi_above_threshold, 30, what="PSI of x2 above 0.2 in Prometheus")
            stable = query(base, 'driftwatch_feature_psi{model="m", feature="x1"}')
            assert float(stable[0]["value"][1]) < 0.2  # type: ignore[index]

            def drift_alert():
                _, body = http_get(base + "/api/v1/alerts")
                alerts = json.loads(body)["data"]["alerts"]
                return [
                    a
                    for a in alerts
                    if a["labels"]["alertname"] == "DriftwatchFeatureDrift"
                    and a["labels"]["model"] == "m"
                    and a["state"] in ("pending", "firing")
                ]

            [alert] = wait_for(drift_alert, 30, what="DriftwatchFeatureDrift pending or firing")
            assert alert["annotations"]["runbook_url"].endswith("#runbook-driftwatchfeaturedrift")
            assert query(base, 'up{job="driftwatch"} == 1')
        finally:
            prom.terminate()
            prom.wait(15)
        assert d.stop() == 0
