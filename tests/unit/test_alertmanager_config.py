"""The example Alertmanager config, checked with the real amtool: it loads, every shipped
alert is routed by its severity, and the inhibit rules name alerts that exist."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    assert by_target["DriftwatchFeatureDrift"] == ("DriftwatchDatasetDrift", ["model"])
    # the source of the feature-drift inhibition is never itself inhibited (no silent loop)
    assert "DriftwatchDatasetDrift" not in by_target


def test_receivers_are_webhooks_with_resolved_notifications():
    doc = yaml.safe_load(CONFIG.read_text())
    receivers = {r["name"]: r for r in doc["receivers"]}
    for name in RECEIVER.values():
        [hook] = receivers[name]["webhook_configs"]
        assert hook["url"].startswith("http") and hook["send_resolved"] is True
