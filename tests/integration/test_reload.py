"""SIGHUP reload against the running `driftwatch run` process (CONTRACT section 9)."""

from __future__ import annotations

import copy
import json
import shutil
import signal
import subprocess
import time
from typing import Any

import orjson
import yaml

from tests.helpers import WebhookServer, events, http_get, reference_frame, sample, wait_for
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import create_topic, produce


def status(d: DaemonProcess) -> dict[str, Any]:
    code, body = http_get(d.base + "/status")
    assert code == 200
    out: dict[str, Any] = json.loads(body)
    return out


def window(d: DaemonProcess, model: str) -> int | None:
    ev = status(d)["models"][model]["evaluation"]
    return None if ev is None else ev["window"]["events"]


def metric(d: DaemonProcess, name: str, **labels: str) -> Any:
    return sample(d.metrics(), name, **labels)


def reload(d: DaemonProcess, cfg: dict[str, Any]) -> float:
    """Write the config over the daemon's file and send SIGHUP; returns when it was sent."""
    d.path.write_text(yaml.safe_dump(cfg))
    sent = time.time()
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    return sent


def reloaded_after(d: DaemonProcess, t: float) -> Any:
    return lambda: (
        metric(d, "driftwatch_config_last_reload_success") == 1
        and metric(d, "driftwatch_config_last_reload_success_timestamp_seconds") > t
    )


def promtool_ok(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    res = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()


def send(broker: Any, topic: str, model: str, seed: int, n: int, start: int = 0) -> None:
    evs = events(seed, n, model, start=start)
    produce(broker, topic, [orjson.dumps(e) for e in evs], key=model.encode())


def refused(d: DaemonProcess, cfg: dict[str, Any], failures: int, logged: str) -> None:
    """SIGHUP with ``cfg``: refused, logged naming the key, counted; the daemon serves on."""
    reload(d, cfg)
    wait_for(
        lambda: metric(d, "driftwatch_config_reload_failures_total") == failures,
        15,
        what=f"refusal {failures}",
    )
    assert metric(d, "driftwatch_config_last_reload_success") == 0
    assert http_get(d.base + "/healthz")[0] == 200 and d.alive()
    assert f"config reload refused: {logged}" in d.log.read_text()
    promtool_ok(d.metrics())


def applied(d: DaemonProcess, cfg: dict[str, Any]) -> None:
    sent = reload(d, cfg)
    wait_for(reloaded_after(d, sent), 15, what="the reload")


def two_models(broker: Any, topic: str, tmp_path: Any, url: str) -> dict[str, Any]:
    cfg = daemon_config(broker, tmp_path, topic, webhooks={"retrain": {"url": url}})
    cfg["models"][0]["webhooks"] = ["retrain"]
    m2 = copy.deepcopy(cfg["models"][0])
    m2.update(name="m2", webhooks=[])
    cfg["models"].append(m2)
    return cfg


def threshold_change(
    d: DaemonProcess, cfg: dict[str, Any], old_hook: WebhookServer, new_hook: WebhookServer
) -> list[dict[str, Any]]:
    """(b) A lower threshold and another webhook URL: the window is kept, x1 now drifts,
    the notification goes to the new URL. Returns the notifications."""
    cfg["models"][0]["drift"]["threshold"] = 0.001
    cfg["webhooks"]["retrain"]["url"] = new_hook.url
    applied(d, cfg)
    wait_for(
        lambda: metric(d, "driftwatch_feature_drift", model="m", feature="x1") == 1,
        15,
        what="x1 drifting at the new threshold",
    )
    s = status(d)["models"]
    assert s["m"]["evaluation"]["window"]["events"] == 700 and s["m"]["events_total"] == 700
    assert s["m2"]["evaluation"]["window"]["events"] == 600
    wait_for(lambda: new_hook.requests, 15, what="the drift notification")
    time.sleep(2)  # a few more evaluations: nothing more
    notified = new_hook.bodies()
    assert {(b["model"], b["type"]) for b in notified} == {("m", "drift.detected")}
    assert old_hook.requests == []
    return notified


def reference_change(
    d: DaemonProcess, cfg: dict[str, Any], broker: Any, topic: str, tmp_path: Any
) -> None:
    """(c) A changed reference for m2: its window restarts (and counts new events), m keeps
    its window and alert state."""
    reference_frame(seed=9, n=3000).to_csv(tmp_path / "reference2.csv", index=False)
    cfg["models"][1]["reference"] = str(tmp_path / "reference2.csv")
    applied(d, cfg)
    wait_for(lambda: window(d, "m2") == 0, 15, what="m2's window restarted")
    assert window(d, "m") == 700
    assert metric(d, "driftwatch_alert_active", model="m", rule="feature_drift") == 1
    assert "model m2: reference changed: window restarted" in d.log.read_text()
    send(broker, topic, "m2", 44, 300, start=600)
    wait_for(lambda: window(d, "m2") == 300, 20, what="m2 counting new events")
    assert metric(d, "driftwatch_events_total", model="m2") == 900
    assert window(d, "m") == 700


def test_sighup_reload_keeps_refuses_and_restarts_against_the_running_daemon(
    broker, topic, tmp_path, daemons
):
    create_topic(broker, topic)
    with WebhookServer() as old_hook, WebhookServer() as new_hook:
        cfg = two_models(broker, topic, tmp_path, old_hook.url)
        d = DaemonProcess(cfg, tmp_path)
        daemons.append(d.start())
        assert metric(d, "driftwatch_config_last_reload_success") == 1
        assert metric(d, "driftwatch_config_reload_failures_total") == 0
        send(broker, topic, "m", 41, 600)
        send(broker, topic, "m2", 42, 600)
        wait_for(lambda: window(d, "m") == 600 and window(d, "m2") == 600, 30, what="600 + 600")
        assert metric(d, "driftwatch_feature_drift", model="m", feature="x1") == 0

        # (a) an invalid config, then a key that cannot change live: refused, old one runs on
        bad = copy.deepcopy(cfg)
        bad["models"][0]["features"]["x1"] = "numeric"
        refused(d, bad, 1, "models[0].features.x1: expected")
        moved = copy.deepcopy(cfg)
        moved["kafka"]["group_id"] = "elsewhere"
        refused(d, moved, 2, "kafka.group_id: cannot change")
        assert status(d)["config"]["last_reload_errors"][0].startswith("kafka.group_id")
        send(broker, topic, "m", 43, 100, start=600)
        wait_for(lambda: window(d, "m") == 700, 20, what="the old config consuming on")

        notified = threshold_change(d, cfg, old_hook, new_hook)
        reference_change(d, cfg, broker, topic, tmp_path)
        time.sleep(1.5)
        assert len(new_hook.requests) == len(notified)  # m's alert state was kept
        assert d.stop() == 0

        # the next start with the new config restores the checkpoints written since
        d2 = DaemonProcess(cfg, tmp_path)
        daemons.append(d2.start())
        wait_for(lambda: window(d2, "m") == 700 and window(d2, "m2") == 300, 20, what="restore")
        assert metric(d2, "driftwatch_alert_active", model="m", rule="feature_drift") == 1
        assert metric(d2, "driftwatch_events_total", model="m2") == 900
        time.sleep(1.5)
        assert len(new_hook.requests) == len(notified)
        assert d2.stop() == 0
