"""The example Alertmanager config, checked with the real amtool: it loads, every shipped
alert is routed by its severity, and the inhibit rules name alerts that exist; and in a
real Alertmanager: the inhibit rules stay within one cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import http_get, start_alertmanager, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config/alertmanager/alertmanager.yml"
RECEIVER = {"critical": "driftwatch-pager", "warning": "driftwatch-tickets"}


def amtool() -> str:
    path = shutil.which("amtool")
    assert path, "amtool is missing: run scripts/ensure-alertmanager.sh"
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool(), *args], capture_output=True, text=True, timeout=60)


def routes(*labels: str, config: Path = CONFIG) -> list[str]:
    res = run("config", "routes", "test", f"--config.file={config}", *labels)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.split()


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "config/prometheus/alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_amtool_check_config_passes():
    res = run("check-config", str(CONFIG))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout
    assert "2 inhibit rules" in res.stdout and "3 receivers" in res.stdout


def test_amtool_check_config_fails_on_an_unknown_receiver(tmp_path):
    """The check above can fail: a route to a receiver that is not defined is refused."""
    doc = yaml.safe_load(CONFIG.read_text())
    doc["receivers"] = [r for r in doc["receivers"] if r["name"] != "driftwatch-pager"]
    broken = tmp_path / "am.yml"
    broken.write_text(yaml.safe_dump(doc))
    res = run("check-config", str(broken))
    assert res.returncode != 0
    assert "driftwatch-pager" in res.stdout + res.stderr


@pytest.mark.parametrize("rule", rules(), ids=lambda r: str(r["alert"]))
def test_every_shipped_alert_is_routed_by_its_severity(rule):
    severity = rule["labels"]["severity"]
    assert severity in RECEIVER, f"{rule['alert']}: no route for severity {severity}"
    got = routes(f"alertname={rule['alert']}", f"severity={severity}", "model=credit-default")
    assert got == [RECEIVER[severity]]


def test_routing_by_severity_and_scope():
    assert routes("alertname=DriftwatchDatasetDrift", "severity=critical") == ["driftwatch-pager"]
    assert routes("alertname=DriftwatchFeatureDrift", "severity=warning") == ["driftwatch-tickets"]
    # a driftwatch alert without (or with an unknown) severity still reaches a person
    assert routes("alertname=DriftwatchSomethingNew") == ["driftwatch-tickets"]
    # other teams' alerts are not driftwatch's to route
    assert routes("alertname=NodeDown", "severity=critical") == ["default"]
    # --verify.receivers makes amtool itself fail on a wrong expectation
    res = run(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        "--verify.receivers=driftwatch-tickets",
        "alertname=DriftwatchDatasetDrift",
        "severity=critical",
    )
    assert res.returncode != 0


def test_driftwatch_alerts_are_grouped_by_model():
    doc = yaml.safe_load(CONFIG.read_text())
    [dw] = [r for r in doc["route"]["routes"] if 'alertname=~"Driftwatch.+"' in r["matchers"]]
    assert dw["group_by"] == ["model"]
    for child in dw["routes"]:
        assert "group_by" not in child  # inherited: per model on every receiver


def test_inhibit_rules_name_shipped_alerts():
    doc = yaml.safe_load(CONFIG.read_text())
    names = {r["alert"] for r in rules()}
    by_target = {}
    for rule in doc["inhibit_rules"]:
        [source] = rule["source_matchers"]
        [target] = rule["target_matchers"]
        src = source.split("=", 1)[1].strip('"')
        tgt = target.split("=", 1)[1].strip('"')
        assert {src, tgt} <= names, rule
        by_target[tgt] = (src, rule.get("equal", []))
    assert by_target["DriftwatchFeatureDrift"] == ("DriftwatchDatasetDrift", ["model", "cluster"])
    # one cluster's DriftwatchDown must not mute another's DriftwatchAbsent in a shared
    # Alertmanager (checked against the real one below)
    assert by_target["DriftwatchAbsent"] == ("DriftwatchDown", ["cluster"])
    # the source of the feature-drift inhibition is never itself inhibited (no silent loop)
    assert "DriftwatchDatasetDrift" not in by_target


def test_receivers_are_webhooks_with_resolved_notifications():
    doc = yaml.safe_load(CONFIG.read_text())
    receivers = {r["name"]: r for r in doc["receivers"]}
    for name in RECEIVER.values():
        [hook] = receivers[name]["webhook_configs"]
        assert hook["url"].startswith("http") and hook["send_resolved"] is True


# -- the inhibit rules in a real Alertmanager ---------------------------------------------
@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example config in a real, private Alertmanager; its base URL."""
    proc, base = start_alertmanager(tmp_path_factory.mktemp("am"), CONFIG)
    try:
        yield base
    finally:
        stop_process(proc)


def post_alerts(base: str, *label_sets: dict[str, str]) -> None:
    now = datetime.now(UTC)
    body = [
        {
            "labels": labels,
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
        for labels in label_sets
    ]
    req = urllib.request.Request(
        base + "/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def state(base: str, **labels: str) -> str:
    """The Alertmanager state of the one alert with exactly these labels."""
    flt = "&".join("filter=" + urllib.parse.quote(f'{k}="{v}"') for k, v in sorted(labels.items()))
    code, body = http_get(f"{base}/api/v2/alerts?{flt}")
    assert code == 200, body
    [alert] = [a for a in json.loads(body) if a["labels"] == labels]
    return str(alert["status"]["state"])


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ({"alertname": "DriftwatchDown", "instance": "a:9108"}, {"alertname": "DriftwatchAbsent"}),
        (
            {"alertname": "DriftwatchDatasetDrift", "model": "m"},
            {"alertname": "DriftwatchFeatureDrift", "model": "m"},
        ),
    ],
    ids=["down-absent", "dataset-feature"],
)
def test_inhibition_stays_within_a_cluster(alertmanager, source, target):
    """A source alert mutes the target of its own cluster, not another cluster's; alerts
    with no cluster label on either side still match (a missing label equals "")."""
    kind = source["alertname"]
    post_alerts(
        alertmanager,
        {**source, "severity": "critical", "cluster": f"{kind}-a"},
        {**target, "severity": "warning", "cluster": f"{kind}-a"},
        {**target, "severity": "warning", "cluster": f"{kind}-b"},
        # one Prometheus without external labels: neither side has `cluster`
        {**source, "severity": "critical", "test": kind},
        {**target, "severity": "warning", "test": kind},
    )
    wait_for(
        lambda: (
            state(alertmanager, **target, severity="warning", cluster=f"{kind}-a") == "suppressed"
        ),
        10,
        what=f"{target['alertname']} of cluster a inhibited",
    )
    # the source that muted cluster a is known to the inhibitor by now: b stays active
    assert state(alertmanager, **target, severity="warning", cluster=f"{kind}-b") == "active"
    wait_for(
        lambda: state(alertmanager, **target, severity="warning", test=kind) == "suppressed",
        10,
        what=f"{target['alertname']} without a cluster label inhibited",
    )
