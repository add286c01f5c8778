from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.sinks.outbox import Outbox
from driftwatch.sources.base import Record
from tests.helpers import FEATURES, events, reference_frame

ROOT = Path(__file__).resolve().parents[2]


def config_dict(tmp_path: Path, **model_over):
    reference_frame().to_csv(tmp_path / "ref.csv", index=False)
    model = {
        "name": "m",
        "reference": "ref.csv",
        "window": {"events": 1000},
        "features": dict(FEATURES),
        "drift": {"threshold": 0.2, "min_events": 200, "share": 0.75},
        "alerts": {"consecutive": 1, "cooldown_seconds": 0},
        "webhooks": ["retrain"],
    }
    model.update(model_over)
    return {
        "kafka": {"bootstrap_servers": ["127.0.0.1:1"], "prediction_topic": "p"},
        "evaluation": {"interval_seconds": 100},
        "webhooks": {"retrain": {"url": "http://127.0.0.1:1/x"}},
        "models": [model],
    }


class FakeDeadLetters:
    def __init__(self):
        self.sent = []

    def send(self, record, reason, detail):
        self.sent.append((record.offset, reason))

    def flush(self):
        pass


def records(evs, start=0):
    return [Record("p", 0, start + i, b"m", json.dumps(e).encode(), 0.0) for i, e in enumerate(evs)]


def test_invalid_records_are_counted_dead_lettered_and_never_touch_the_window(tmp_path):
    cfg = parse_config(config_dict(tmp_path), tmp_path)
    dlq = FakeDeadLetters()
    pipe = build_pipeline(cfg, dead_letters=dlq)
    good = records(events(1, 50))
    bad = [
        Record("p", 0, 1000, None, b"{nope", 0.0),
        Record("p", 0, 1001, None, b'"str"', 0.0),
        Record("p", 0, 1002, None, b'{"model": "zzz", "id": "1"}', 0.0),
    ]
    assert pipe.apply(good[:25] + bad + good[25:]) == 50
    snap = pipe.telemetry.snapshot()
    assert snap.events_total == {"m": 50}
    assert snap.invalid_total == {"invalid_json": 1, "not_an_object": 1, "unknown_model": 1}
    assert dlq.sent == [(1000, "invalid_json"), (1001, "not_an_object"), (1002, "unknown_model")]
    assert pipe.monitors["m"].window.events == 50


def test_drift_fires_once_then_resolves_into_the_outbox(tmp_path):
    cfg = parse_config(config_dict(tmp_path), tmp_path)
    box = Outbox(tmp_path / "o.sqlite3")
    pipe = build_pipeline(cfg, outbox=box)
    pipe.apply(records(events(1, 1000)))
    [(ev, notes)] = pipe.evaluate(100.0)
    assert notes == [] and max(f.psi for f in ev.features) < 0.1
    pipe.apply(records(events(2, 1000, shift=("x2", "color"))))
    [(ev, notes)] = pipe.evaluate(200.0)
    assert [n.type for n in notes] == ["drift.detected"]
    body = notes[0].body
    assert [f["feature"] for f in body["drifted_features"]] == ["x2", "color"]
    assert body["window"]["events"] == ev.window_events
    assert body["occurred_at"] == "1970-01-01T00:03:20Z"
    [(_, notes)] = pipe.evaluate(300.0)
    assert notes == []  # still firing: no repeat
    pipe.apply(records(events(3, 1000)))
    [(_, notes)] = pipe.evaluate(400.0)
    assert [n.type for n in notes] == ["resolved"]
    assert [i.webhook for i in box.listing()] == ["retrain", "retrain"]


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "driftwatch", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_check_config_bad_key_exits_2_naming_it(tmp_path):
    data = config_dict(tmp_path)
    data["models"][0]["features"]["x1"] = "numeric"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    res = run_cli("check-config", "--config", str(tmp_path / "c.yaml"))
    assert res.returncode == 2
    assert (
        'models[0].features.x1: expected "numerical" or "categorical", got "numeric"' in res.stderr
    )
    assert "Traceback" not in res.stderr


def test_check_config_ok_and_missing_reference(tmp_path):
    data = config_dict(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    res = run_cli("check-config", "--config", str(tmp_path / "c.yaml"))
    assert res.returncode == 0, res.stderr
    assert "model m: classification, 4 features" in res.stdout
    (tmp_path / "ref.csv").unlink()
    res = run_cli("check-config", "--config", str(tmp_path / "c.yaml"))
    assert res.returncode == 2 and "file not found" in res.stderr


def test_unknown_kafka_client_option_exits_2(tmp_path):
    data = config_dict(tmp_path)
    data["kafka"]["client"] = {"sesion_timeout_ms": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    for cmd in ("check-config", "run"):
        res = run_cli(cmd, "--config", str(tmp_path / "c.yaml"))
        assert res.returncode == 2
        assert "kafka.client.sesion_timeout_ms: unknown kafka-python option" in res.stderr


def test_replay_prints_one_line_per_evaluation(tmp_path):
    data = config_dict(tmp_path)
    data["evaluation"]["interval_seconds"] = 500  # events are 1 s apart
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    evs = events(1, 1000) + events(2, 1000, shift=("x1",), start=1000)
    lines = [json.dumps(e) for e in evs]
    lines.insert(10, "garbage")
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    res = run_cli(
        "replay", "--config", str(tmp_path / "c.yaml"), "--input", str(tmp_path / "in.jsonl")
    )
    assert res.returncode == 0, res.stderr
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(out) == 4  # at +500 s, +1000 s, +1500 s of event time, and at the end
    assert [o["breaches"]["feature_drift"] for o in out] == [False, False, True, True]
    assert [len(o["notifications"]) for o in out] == [0, 0, 1, 0]
    assert out[2]["notifications"][0]["drifted_features"][0]["feature"] == "x1"
    assert "invalid_json" in res.stderr


def test_shipped_demo_yaml_is_the_one_the_demo_runs():
    assert (ROOT / "config" / "demo.yaml").read_text() == (
        ROOT / "src" / "driftwatch" / "demo" / "demo.yaml"
    ).read_text()
