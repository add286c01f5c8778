"""Rule ``data_quality`` end to end (CONTRACT section 9): config, pipeline, alert policy,
notification bodies, /status, /metrics, replay output, checkpoints from before the rule."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from driftwatch.app import build_pipeline
from driftwatch.backtest import Recorded, score_models
from driftwatch.config import parse_config
from driftwatch.detectors.policy import RuleState
from driftwatch.errors import ConfigError
from driftwatch.monitor.model import ModelMonitor, layout_fingerprint
from driftwatch.monitor.results import RULES
from driftwatch.replay import replay
from driftwatch.sinks.prometheus import PrometheusExporter
from driftwatch.sinks.webhook import GITHUB_PAYLOAD_KEYS, shape
from driftwatch.sources.base import Record
from driftwatch.state.checkpoint import PartitionCheckpoint
from driftwatch.windows.reference import NumericalBins, ReferenceProfile
from tests.helpers import events, sample
from tests.unit.test_pipeline import config_dict, records, run_cli

QUALITY = {"max_missing_ratio": 0.05, "max_new_category_ratio": 0.05, "min_events": 200}
ALERTS = {"consecutive": 1, "cooldown_seconds": 0, "resolve_ratio": 0.5}


def degraded(seed: int, start: int, missing_every: int = 5, purple_every: int = 10):
    """1,000 events: x1 absent or null in one of ``missing_every`` (alternately), color an
    unseen category in one of ``purple_every`` (0: never)."""
    evs = events(seed, 1000, start=start)
    for i, e in enumerate(evs):
        if i % missing_every == 0:
            if (i // missing_every) % 2:
                e["features"]["x1"] = None
            else:
                del e["features"]["x1"]
        if purple_every and i % purple_every == 1:
            e["features"]["color"] = "purple"
    return evs


def pipeline(tmp_path: Path, **model: Any):
    cfg = parse_config(
        config_dict(tmp_path, **({"quality": QUALITY, "alerts": ALERTS} | model)), tmp_path
    )
    return build_pipeline(cfg)


def quality_notes(notes):
    return [n for n in notes if n.rule == "data_quality"]


def test_data_quality_fires_naming_each_breach_holds_by_hysteresis_then_resolves(tmp_path):
    pipe = pipeline(tmp_path)
    pipe.apply(records(events(1, 1000)))
    [(ev, notes)] = pipe.evaluate(100.0)
    assert not ev.breaches["data_quality"] and notes == []
    assert ev.quality["x1"].missing_ratio == 0.0

    pipe.apply(records(degraded(2, 1000), start=1000))
    [(ev, notes)] = pipe.evaluate(200.0)
    assert ev.window_events == 1000
    [note] = quality_notes(notes)
    assert note.type == "data_quality.degraded"
    body = note.body
    assert (body["type"], body["rule"], body["model"]) == (
        "data_quality.degraded",
        "data_quality",
        "m",
    )
    assert body["data_quality"] == {
        "features": [
            {"feature": "x1", "ratio": "missing_ratio", "value": 0.2, "threshold": 0.05},
            {"feature": "color", "ratio": "new_category_ratio", "value": 0.1, "threshold": 0.05},
        ]
    }
    assert pipe.telemetry.snapshot().alert_active[("m", "data_quality")]
    status = pipe.status()["models"]["m"]
    assert status["alerts"]["data_quality"] is True
    evaluation = status["evaluation"]
    assert evaluation["breaches"]["data_quality"] is True
    assert evaluation["quality"]["x1"]["missing_ratio"] == 0.2
    assert evaluation["quality"]["color"]["new_category_ratio"] == 0.1
    assert [b["feature"] for b in evaluation["quality_breaches"]] == ["x1", "color"]
    text = PrometheusExporter(pipe.telemetry.snapshot, []).render(None)[0].decode()
    assert sample(text, "driftwatch_alert_active", model="m", rule="data_quality") == 1.0
    assert sample(text, "driftwatch_feature_missing_ratio", model="m", feature="x1") == 0.2

    # 4% missing: under the threshold (5%) but over threshold x resolve_ratio (2.5%) keeps
    # x1 breaching; color (no unseen category now) stops, so only x1 is named
    pipe.apply(records(degraded(3, 2000, missing_every=25, purple_every=0), start=2000))
    [(ev, notes)] = pipe.evaluate(300.0)
    assert quality_notes(notes) == []
    assert [(b.feature, b.ratio, b.value) for b in ev.quality_breaches] == [
        ("x1", "missing_ratio", 0.04)
    ]

    pipe.apply(records(events(4, 1000, start=3000), start=3000))
    [(ev, notes)] = pipe.evaluate(400.0)
    [note] = quality_notes(notes)
    assert note.type == "resolved"
    assert note.body["data_quality"] == {"features": []}
    assert not pipe.telemetry.snapshot().alert_active[("m", "data_quality")]


def test_consecutive_and_cooldown_apply_as_to_every_rule(tmp_path):
    alerts = {"consecutive": 2, "cooldown_seconds": 1000}
    pipe = pipeline(tmp_path, quality={"max_missing_ratio": 0.05}, alerts=alerts)
    bad = records(degraded(2, 0, purple_every=0))
    clean = records(events(3, 1000, start=1000), start=1000)
    pipe.apply(bad)
    assert quality_notes(pipe.evaluate(100.0)[0][1]) == []  # one breach: not yet
    assert [n.type for n in quality_notes(pipe.evaluate(200.0)[0][1])] == ["data_quality.degraded"]
    pipe.apply(clean)
    assert [n.type for n in quality_notes(pipe.evaluate(300.0)[0][1])] == ["resolved"]
    pipe.apply(bad)
    pipe.evaluate(400.0)
    # fires again within the cooldown: active, but not notified (nor its resolve)
    assert quality_notes(pipe.evaluate(500.0)[0][1]) == []
    assert pipe.telemetry.snapshot().alert_active[("m", "data_quality")]
    pipe.apply(clean)
    assert quality_notes(pipe.evaluate(600.0)[0][1]) == []


def test_without_a_quality_rule_the_figures_are_still_computed(tmp_path):
    cfg = parse_config(config_dict(tmp_path, alerts=ALERTS), tmp_path)
    pipe = build_pipeline(cfg)
    pipe.apply(records(degraded(2, 0)))
    [(ev, notes)] = pipe.evaluate(100.0)
    assert ev.quality["x1"].missing_ratio == 0.2 and not ev.breaches["data_quality"]
    assert quality_notes(notes) == []
    drift = [n for n in notes if n.rule == "feature_drift"]
    assert drift and drift[0].body["data_quality"] is None  # no rule: no block


def test_a_checkpoint_from_before_the_rule_restores(tmp_path):
    """Alert state without ``data_quality`` (rule state, hysteresis): restored as quiet."""
    pipe = pipeline(tmp_path)
    pipe.apply(records(degraded(2, 0)))
    pipe.evaluate(100.0)
    states, alerts = pipe.capture(["m"])
    old = copy.deepcopy(alerts)
    del old["m"]["rules"]["data_quality"]
    del old["m"]["hysteresis"]["quality"]
    blob = PartitionCheckpoint("p", 0, {"p": 1000}, states, old).encode()
    cp = PartitionCheckpoint.decode(blob, "p-0")

    fresh = pipeline(tmp_path)
    fresh.restore(cp.models, cp.alerts)
    restored = fresh.alerts["m"]
    assert restored.states["data_quality"] == RuleState()
    assert restored.hysteresis is not None and restored.hysteresis.quality == frozenset()
    [(ev, notes)] = fresh.evaluate(200.0)  # the same window: the rule fires from quiet
    assert ev.window_events == 1000
    assert [n.type for n in quality_notes(notes)] == ["data_quality.degraded"]


def test_reference_summaries_leave_the_layout_fingerprint_alone(tmp_path):
    """Checkpoints made before the summaries existed must still restore."""
    pipe = pipeline(tmp_path)
    mon = pipe.monitors["m"]
    bins = mon.profile.features["x1"]
    assert isinstance(bins, NumericalBins)
    bare = dataclasses.replace(bins, reference_mean=float("nan"), reference_quantiles=())
    profile = ReferenceProfile(
        {**mon.profile.features, "x1": bare}, mon.profile.prediction, mon.profile.prediction_source
    )
    other = ModelMonitor(mon.spec, profile, mon.layout)
    assert layout_fingerprint(other) == mon.fingerprint


def test_replay_lines_carry_the_figures_and_the_notification(tmp_path):
    data = config_dict(tmp_path, quality=QUALITY, alerts=ALERTS)
    data["evaluation"]["interval_seconds"] = 500
    cfg = parse_config(data, tmp_path)
    evs = events(1, 1000) + degraded(2, 1000)
    lines: list[dict[str, Any]] = []
    replay(
        cfg,
        [Record("r", 0, i, None, orjson.dumps(e), 0.0) for i, e in enumerate(evs)],
        lambda line: lines.append(orjson.loads(orjson.dumps(line))),
        clock=lambda: 1_795_392_000.0,
    )
    last = lines[-1]
    assert set(last["quality"]) == {"x1", "x2", "x3", "color"}
    assert set(last["quality"]["x1"]) >= {
        "missing_ratio",
        "out_of_range_ratio",
        "mean",
        "mean_error_bound",
        "quantiles",
        "quantile_error_bounds",
        "reference",
    }
    fired = [n for line in lines for n in line["notifications"] if n["rule"] == "data_quality"]
    assert [n["type"] for n in fired] == ["data_quality.degraded"]


def test_webhook_formats_carry_the_block():
    body: dict[str, Any] = {
        "id": "n-1",
        "type": "data_quality.degraded",
        "model": "m",
        "rule": "data_quality",
        "occurred_at": "2026-11-22T06:00:00Z",
        "window": {"events": 1000, "labeled_events": 0},
        "drifted_features": [],
        "performance": None,
        "data_quality": {
            "features": [
                {"feature": "x1", "ratio": "missing_ratio", "value": 0.2, "threshold": 0.05}
            ]
        },
        "prediction_psi": None,
        "drifted_features_ratio": 0.0,
    }
    github = shape("github", body)
    assert github["event_type"] == "driftwatch.data_quality.degraded"
    assert github["client_payload"]["data_quality"] == body["data_quality"]
    assert len(GITHUB_PAYLOAD_KEYS) <= 10  # repository_dispatch's limit
    slack = shape("slack", body)
    assert slack["text"] == ":broken_heart: Data quality degraded: model m, rule data_quality"
    assert "`x1` missing ratio 0.2 (max 0.05)" in orjson.dumps(slack).decode()


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, Path("/tmp"))
    return exc.value.problems


def test_config_errors_name_the_key(tmp_path):
    base = config_dict(tmp_path)
    cfg = parse_config(base, tmp_path)
    assert cfg.models[0].quality is None
    ok = parse_config(config_dict(tmp_path, quality={"max_out_of_range_ratio": 0.1}), tmp_path)
    assert ok.models[0].quality is not None and ok.models[0].quality.min_events == 200
    got = problems(
        config_dict(
            tmp_path,
            quality={
                "max_missing_ratio": 1.5,
                "max_out_of_range_ratio": -1,
                "min_events": 0,
                "x": 1,
            },
        )
    )
    assert got == [
        "models[0].quality.max_missing_ratio: input should be less than or equal to 1, got 1.5",
        "models[0].quality.max_out_of_range_ratio: input should be greater than or equal to 0, "
        "got -1",
        "models[0].quality.min_events: input should be greater than or equal to 1, got 0",
        "models[0].quality.x: unknown key",
    ]
    assert problems(config_dict(tmp_path, quality={"min_events": 10})) == [
        "models[0].quality: expected at least one of max_missing_ratio, "
        "max_out_of_range_ratio, max_new_category_ratio"
    ]
    assert problems(config_dict(tmp_path, quality={"max_new_category_ratio": "lots"}))[
        0
    ].startswith("models[0].quality.max_new_category_ratio: input should be a valid number")


def test_check_config_exits_2_on_a_bad_quality_key(tmp_path):
    data = config_dict(tmp_path, quality={"max_missing_ratio": 2})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    res = run_cli("check-config", "--config", str(tmp_path / "c.yaml"))
    assert res.returncode == 2
    assert (
        "models[0].quality.max_missing_ratio: input should be less than or equal to 1, got 2"
        in res.stderr
    )
    assert "Traceback" not in res.stderr


def test_backtest_scores_data_quality_only_where_configured():
    quiet = dict.fromkeys(RULES, False)
    recorded = [
        Recorded(model, float(i), 100 * i, quiet, False) for model in ("m", "n") for i in (1, 2)
    ]
    rows = score_models({"m": {"data_quality"}, "n": set()}, recorded, {})
    assert [(r.model, r.rule) for r in rows] == [
        ("m", "feature_drift"),
        ("m", "dataset_drift"),
        ("m", "data_quality"),
        ("n", "feature_drift"),
        ("n", "dataset_drift"),
    ]
