"""The whole alert chain with real processes: driftwatch (on the broker) -> Prometheus
(the shipped rules) -> Alertmanager (the example config) -> a webhook receiver.

Model ``a`` drifts on two features of four with ``drift.share`` 0.5, so both its
feature_drift and dataset_drift rules fire; model ``b`` drifts the same way with share
0.75, so only feature_drift. The example config routes critical alerts to the pager and
warnings to the ticket receiver, grouped by model, and inhibits DriftwatchFeatureDrift of
a model while its DriftwatchDatasetDrift fires: the receiver must get a's dataset alert
and b's feature alert, never a's feature alert. Then the daemon stops and DriftwatchDown
pages, while DriftwatchAbsent (no driftwatch series left) is inhibited by it.

The test's copies of the configs differ from the shipped ones only where time is
concerned: each rule's ``for`` is 2s (the shipped 1m-2m would make the test minutes
long), Alertmanager groups wait 1s, and the receivers' URLs point at the test's server.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.helpers import (
    WebhookServer,
    events,
    http_get,
    start_alertmanager,
    start_prometheus,
    stop_process,
    wait_for,
)
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import create_topic, produce
from tests.integration.test_observability import query

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config/prometheus/alerts.yml"
AM_CONFIG = ROOT / "config/alertmanager/alertmanager.yml"
FOR = "2s"


def fast_rules(tmp_path: Path) -> Path:
    """The shipped rules with every ``for`` shortened; nothing else changes."""
    shipped = yaml.safe_load(RULES.read_text())
    doc = copy.deepcopy(shipped)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    for g_fast, g_shipped in zip(doc["groups"], shipped["groups"], strict=True):
        for fast, rule in zip(g_fast["rules"], g_shipped["rules"], strict=True):
            assert {k: v for k, v in fast.items() if k != "for"} == {
                k: v for k, v in rule.items() if k != "for"
            }
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def fast_alertmanager_config(tmp_path: Path, hook: WebhookServer) -> Path:
    """The example config with its receivers at the test's server and 1s groups."""
    doc = yaml.safe_load(AM_CONFIG.read_text())
    [dw] = [r for r in doc["route"]["routes"] if 'alertname=~"Driftwatch.+"' in r["matchers"]]
    dw.update({"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"})
    for receiver in doc["receivers"]:
        for hook_cfg in receiver["webhook_configs"]:
            hook_cfg["url"] = f"http://127.0.0.1:{hook.port}/{receiver['name']}"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def notified(hook: WebhookServer) -> list[tuple[str, str, str | None, str, dict[str, Any]]]:
    """(receiver path, alertname, model, status, body) of every alert delivered so far."""
    with hook.lock:
        requests = list(hook.requests)
    out = []
    for req in requests:
        body = json.loads(req["body"])
        for alert in body["alerts"]:
            labels = alert["labels"]
            out.append(
                (req["path"], labels["alertname"], labels.get("model"), alert["status"], body)
            )
    return out


def am_alerts(base: str, alertname: str) -> list[dict[str, Any]]:
    flt = urllib.parse.quote(f'alertname="{alertname}"')
    code, body = http_get(f"{base}/api/v2/alerts?filter={flt}")
    assert code == 200, body
    result: list[dict[str, Any]] = json.loads(body)
    return result


def delivered(hook: WebhookServer, path: str, alertname: str, model: str | None) -> Any:
    return [n for n in notified(hook) if n[:4] == (path, alertname, model, "firing")]


def in_alertmanager(base: str, alertname: str, model: str | None, state: str) -> Any:
    found = [x for x in am_alerts(base, alertname) if x["labels"].get("model") == model]
    return found if found and all(x["status"]["state"] == state for x in found) else None


def check_drift_alerts(hook: WebhookServer, am_base: str, prom_base: str) -> None:
    # critical -> the pager, one group per model
    [(*_, page)] = wait_for(
        lambda: delivered(hook, "/driftwatch-pager", "DriftwatchDatasetDrift", "a"),
        40,
        what="DriftwatchDatasetDrift of a at the pager receiver",
    )
    assert page["receiver"] == "driftwatch-pager" and page["status"] == "firing"
    assert page["groupLabels"] == {"model": "a"}
    [alert] = page["alerts"]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"].endswith("#runbook-driftwatchdatasetdrift")
    assert alert["annotations"]["summary"] == "Most features of model a drifted"
    assert "(now 50%)" in alert["annotations"]["description"]  # the templated query

    # warning -> the ticket receiver: b's feature drift is delivered...
    [(*_, ticket)] = wait_for(
        lambda: delivered(hook, "/driftwatch-tickets", "DriftwatchFeatureDrift", "b"),
        20,
        what="DriftwatchFeatureDrift of b at the ticket receiver",
    )
    assert ticket["groupLabels"] == {"model": "b"}
    assert ticket["alerts"][0]["labels"]["severity"] == "warning"
    assert in_alertmanager(am_base, "DriftwatchFeatureDrift", "b", "active")

    # ...a's fires in Prometheus and reaches Alertmanager, which holds it back
    [held] = wait_for(
        lambda: in_alertmanager(am_base, "DriftwatchFeatureDrift", "a", "suppressed"),
        20,
        what="a's feature alert suppressed",
    )
    assert held["status"]["inhibitedBy"] and not held["status"]["silencedBy"]
    firing = query(prom_base, 'ALERTS{alertname="DriftwatchFeatureDrift", alertstate="firing"}')
    assert {s["metric"]["model"] for s in firing} == {"a", "b"}  # type: ignore[index]
    time.sleep(3)  # several 1s group intervals: a's feature alert would be out by now
    assert not [n for n in notified(hook) if n[1:3] == ("DriftwatchFeatureDrift", "a")]

    # the daemon exports driftwatch_build_info: DriftwatchAbsent stays quiet
    [info] = query(prom_base, "driftwatch_build_info")
    assert info["metric"]["version"] and info["metric"]["python"]  # type: ignore[index]
    assert query(prom_base, "absent(driftwatch_build_info)") == []


def check_down_alerts(hook: WebhookServer, am_base: str, instance: str) -> None:
    """After the daemon stopped: DriftwatchDown pages for its instance; DriftwatchAbsent
    (its series went stale with the failed scrape) fires too but is inhibited."""
    down = wait_for(
        lambda: delivered(hook, "/driftwatch-pager", "DriftwatchDown", None),
        20,
        what="DriftwatchDown at the pager",
    )
    assert down[0][4]["alerts"][0]["labels"]["instance"] == instance
    [absent] = wait_for(
        lambda: in_alertmanager(am_base, "DriftwatchAbsent", None, "suppressed"),
        20,
        what="DriftwatchAbsent suppressed in Alertmanager",
    )
    assert absent["status"]["inhibitedBy"]
    time.sleep(2)
    assert not [n for n in notified(hook) if n[1] == "DriftwatchAbsent"]
    assert all(n[0] != "/default" for n in notified(hook))


def test_drift_reaches_the_receiver_routed_grouped_and_inhibited(broker, topic, tmp_path, daemons):
    t0 = time.monotonic()
    create_topic(broker, topic)
    cfg = daemon_config(broker, tmp_path, topic)
    [m] = cfg["models"]
    cfg["models"] = [
        {**m, "name": "a", "drift": {**m["drift"], "share": 0.5}},
        {**m, "name": "b", "drift": {**m["drift"], "share": 0.75}},
    ]
    procs: list[subprocess.Popen[bytes]] = []
    with WebhookServer() as hook:
        try:
            am, am_base = start_alertmanager(tmp_path, fast_alertmanager_config(tmp_path, hook))
            procs.append(am)
            d = DaemonProcess(cfg, tmp_path)
            daemons.append(d.start())
            prom, prom_base = start_prometheus(
                tmp_path, f"127.0.0.1:{d.port}", fast_rules(tmp_path), am_base
            )
            procs.append(prom)
            for model, seed in (("a", 81), ("b", 82)):
                shifted = events(seed, 1000, model=model, shift=("x2", "color"))
                produce(broker, topic, [orjson.dumps(e) for e in shifted], key=model.encode())
            check_drift_alerts(hook, am_base, prom_base)
            assert d.stop() == 0
            check_down_alerts(hook, am_base, f"127.0.0.1:{d.port}")
        finally:
            for proc in reversed(procs):
                stop_process(proc)
    assert time.monotonic() - t0 < 90
