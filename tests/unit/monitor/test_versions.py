"""Model versions (CONTRACT section 9): the version window, its slots, per-version figures
against brute force, rule ``version_regression`` and its notifications, checkpoints."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftwatch import stats
from driftwatch.app import build_monitor, build_pipeline
from driftwatch.config import parse_config
from driftwatch.errors import ConfigError, DriftwatchError
from driftwatch.events.schema import Label, Prediction
from driftwatch.monitor.join import LabelJoin
from driftwatch.monitor.model import ModelSnapshot
from driftwatch.monitor.performance import PerformanceLayout
from driftwatch.monitor.results import Hysteresis
from driftwatch.monitor.versions import OTHER, VersionWindow
from driftwatch.sinks.webhook import shape
from driftwatch.sources.base import Record
from driftwatch.state import codec
from driftwatch.stats import performance as perf
from tests.unit.monitor.test_performance_window import classification_reference

T0 = 1_790_000_000.0
REGRESSION = {"metric": "accuracy", "max_drop": 0.05, "min_labels": 100}


def config(tmp_path, window=None, versions=None, task="classification", label_topic="l", **m):
    model = {
        "name": "m",
        "task": task,
        "reference": "ref.csv",
        "window": window or {"events": 1000},
        "features": {"x": "numerical"},
        "alerts": {"consecutive": 1, "cooldown_seconds": 0, "resolve_ratio": 0.5},
        "webhooks": ["hook"],
        **m,
    }
    if versions is not None:
        model["versions"] = versions
    kafka = {"bootstrap_servers": ["x:1"], "prediction_topic": "p"}
    if label_topic:
        kafka["label_topic"] = label_topic
    return {
        "kafka": kafka,
        "webhooks": {"hook": {"url": "http://127.0.0.1:1/x"}},
        "models": [model],
    }


def parsed(tmp_path, **kw):
    if not (tmp_path / "ref.csv").exists():
        classification_reference(tmp_path / "ref.csv")
    return parse_config(config(tmp_path, **kw), tmp_path)


# -- slots ------------------------------------------------------------------------------------
def test_slots_first_seen_pooling_and_freeing():
    vw = VersionWindow(2, 100, None, None, PerformanceLayout("classification", "1"))
    ts = np.full(5, T0)
    slots = vw.slots_for(["a", "b", "c", None, "a"])
    # c finds every slot taken: the oldest version, a, is pooled in __other__ (slot 2),
    # its earlier events in the batch with it, and c takes its slot; a stays pooled
    assert slots == [2, 1, 0, -1, 2]
    assert vw.demoted == [0] and vw.pooled == {"a"}
    vw.demoted.clear()
    vw.add(slots, None, ts)
    assert vw.names == ["c", "b"] and vw.first_seen == [3, 2]
    results = vw.results(vw.snapshot())
    assert [(r.version, r.events) for r in results] == [("b", 1), ("c", 1), (OTHER, 2)]
    # everything leaves the window: slots freed, the pooled set forgotten
    vw.add([-1] * 100, None, np.full(100, T0))
    assert vw.names == [None, None] and vw.slot_of == {} and vw.pooled == set()
    assert [r.version for r in vw.results(vw.snapshot())] == []
    # the next new versions take the freed slots, first seen anew
    slots = vw.slots_for(["d", "a"])
    assert slots == [0, 1] and vw.first_seen == [4, 5]
    vw.add(slots, None, np.full(2, T0))
    results = vw.results(vw.snapshot())
    assert [(r.version, r.events, r.first_seen) for r in results] == [("d", 1, 4), ("a", 1, 5)]


def test_demoting_moves_counts_labels_and_sums_into_other(tmp_path):
    """max_versions 1: v1 serves with labels pending, v2 arrives: v1's counts and its
    waiting predictions move to __other__, so v1's labels never count for v2."""
    pipe = build_pipeline(parsed(tmp_path, versions={"max_versions": 1, "regression": REGRESSION}))
    first = canary(0, 40, {"v1": 0.9}, split=(1.0,))
    pipe.apply(recs("p", first), now=T0 + 100)
    second = canary(1, 40, {"v2": 0.9}, start=40, split=(1.0,))
    pipe.apply(recs("p", second), now=T0 + 200)
    pipe.apply(recs("l", first), now=T0 + 300)
    [(ev, _)] = pipe.evaluate(T0 + 300)
    by = {v.version: v for v in ev.versions}
    assert set(by) == {"v2", OTHER}
    assert (by["v2"].events, by["v2"].labeled_events) == (40, 0)
    assert (by[OTHER].events, by[OTHER].labeled_events) == (40, 40)


def test_pooled_versions_are_reported_last_as_other(tmp_path):
    pipe = build_pipeline(parsed(tmp_path, versions={"max_versions": 2}))
    evs = canary(0, 90, {"v1": 0.9, "v2": 0.9, "v3": 0.9}, split=(1 / 3, 1 / 3, 1 / 3))
    pipe.apply(recs("p", evs), now=T0 + 1000)
    [(ev, _)] = pipe.evaluate(T0 + 1000)
    names = [v.version for v in ev.versions]
    order = list(dict.fromkeys(p["model_version"] for p, _ in evs))
    assert names == [order[1], order[2], OTHER]  # the oldest first-seen is pooled
    assert sum(v.events for v in ev.versions) == 90
    assert ev.versions[-1].first_seen is None


# -- per-version figures against brute force -------------------------------------------------
def _predictions(rng, start, n, phase_len, t, late):
    out = []
    for i in range(start, start + n):
        phase = i // phase_len
        r = rng.random()
        version = None if r < 0.15 else f"v{phase}" if r < 0.6 else f"v{max(phase - 1, 0)}"
        x = float(rng.normal())
        score = 1 / (1 + math.exp(-2 * x))
        ts = t + i - (rng.uniform(0, late) if late and rng.random() < 0.1 else 0.0)
        out.append(
            Prediction("m", f"p{i}", ts, {"x": x}, str(int(score > 0.5)), score, {}, version)
        )
    return out


@pytest.mark.parametrize("kind", ["events", "seconds"])
def test_per_version_figures_equal_brute_force(tmp_path, kind):
    classification_reference(tmp_path / "ref.csv")
    ref_scores = pd.read_csv(tmp_path / "ref.csv")["score"].to_numpy()

    @settings(
        max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        seed=st.integers(0, 2**31),
        size=st.integers(100, 300),
        n=st.integers(50, 900),
        batch=st.integers(1, 60),
    )
    def check(seed, size, n, batch):
        window = {"events": size} if kind == "events" else {"seconds": float(size)}
        cfg = parsed(
            tmp_path, window=window, versions={"max_versions": 4, "regression": REGRESSION}
        )
        monitor = build_monitor(cfg.models[0])
        rng = np.random.default_rng(seed)
        preds = _predictions(rng, 0, n, 2 * size, T0, 1.2 * size if kind == "seconds" else 0)
        truth = {
            p.id: p.prediction if rng.random() < 0.7 else "01"[p.prediction == "0"] for p in preds
        }
        labelled = {p.id for p in preds if rng.random() < 0.6}
        early = {i for i in labelled if rng.random() < 0.3}  # labels before their prediction
        joined: set[str] = set()
        for start in range(0, n, batch):
            chunk = preds[start : start + batch]
            now = max(p.timestamp for p in chunk)
            monitor.ingest_labels(
                [Label("m", p.id, truth[p.id], now) for p in chunk if p.id in early], now
            )
            monitor.ingest_batch(chunk)
            monitor.ingest_labels(
                [Label("m", p.id, truth[p.id], now) for p in chunk if p.id in labelled - early], now
            )
            held = _held(monitor)
            joined |= {p.id for p in chunk if p.id in labelled and held(p)}
            # lockstep: the same panes in both windows
            main, ver = monitor.window, monitor.versions.window
            assert [(p.key, p.n) for p in main._panes] == [(p.key, p.n) for p in ver._panes]
        snap = monitor.snapshot()
        assert isinstance(snap, ModelSnapshot) and snap.versions is not None
        results = {r.version: r for r in monitor.versions.results(snap.versions)}
        held = _held(monitor)
        in_window = [p for p in preds if held(p)]
        assert len(in_window) == monitor.window.events
        expected = sorted({p.model_version for p in in_window if p.model_version is not None})
        assert sorted(results) == expected  # no __other__: at most 3 versions at once
        for name, r in results.items():
            members = [p for p in in_window if p.model_version == name]
            lab = [p for p in members if p.id in joined]
            assert r.events == len(members)
            assert r.labeled_events == len(lab)
            y = np.array([truth[p.id] for p in lab])
            yhat = np.array([p.prediction for p in lab])
            tp, fp, fn, tn = perf.confusion(y, yhat, "1")
            correct = float(np.sum(y == yhat))
            for metric in ("accuracy", "precision", "recall", "f1"):
                want = perf.from_confusion(metric, tp, fp, fn, tn, correct)
                got = r.performance[metric]
                assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want)
            assert r.prediction_psi == pytest.approx(
                stats.psi(ref_scores, np.array([p.score for p in members])), rel=1e-9
            )

    check()


def _held(monitor):
    """Is a prediction in the monitor's window? (by its pane key, as the window keys it)"""
    window = monitor.window
    keys = {p.key for p in window._panes}
    if hasattr(window, "pane_width"):
        return lambda p: math.floor(p.timestamp / window.pane_width) in keys
    newest = int(monitor.events_total)  # a count window holds the newest events
    first = newest - window.events
    return lambda p: int(p.id[1:]) >= first


def test_regression_task_versions_equal_brute_force(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 2000)
    pd.DataFrame({"x": x, "prediction": x * 2, "label": x * 2 + rng.normal(0, 1, 2000)}).to_csv(
        tmp_path / "ref.csv", index=False
    )
    cfg = parse_config(
        config(
            tmp_path,
            task="regression",
            versions={"regression": {"metric": "mae", "max_drop": 0.1, "min_labels": 10}},
        ),
        tmp_path,
    )
    monitor = build_monitor(cfg.models[0])
    preds, labels = [], {}
    for i in range(600):
        v = "a" if i < 100 or i % 2 else "b"
        xi = float(rng.normal())
        preds.append(Prediction("m", f"p{i}", T0 + i, {"x": xi}, 2 * xi, None, {}, v))
        labels[f"p{i}"] = 2 * xi + float(rng.normal(0, 1 if v == "a" else 3))
    monitor.ingest_batch(preds)
    monitor.ingest_labels([Label("m", k, v, T0 + 600) for k, v in labels.items()], T0 + 600)
    ev = monitor.evaluate(T0 + 600)
    by = {v.version: v for v in ev.versions}
    for name in ("a", "b"):
        err = np.array(
            [float(p.prediction) - labels[p.id] for p in preds if p.model_version == name]
        )
        assert by[name].labeled_events == len(err)
        assert by[name].performance["mae"] == pytest.approx(np.mean(np.abs(err)))
        assert by[name].performance["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    # b's errors are larger: higher mae is worse
    assert ev.version_newest == "b" and ev.version_previous == "a" and ev.version_regression


# -- the rule through the pipeline --------------------------------------------------------------
def canary(seed, n, accuracy, start=0, split=None):
    """Prediction and label events: versions drawn by ``split`` (default: equal shares), each
    right with its ``accuracy``."""
    rng = np.random.default_rng(seed)
    names = list(accuracy)
    p = split or [1 / len(names)] * len(names)
    out = []
    for i in range(start, start + n):
        v = names[int(rng.choice(len(names), p=p))]
        x = float(rng.normal())
        score = 1 / (1 + math.exp(-2 * x))
        pred = int(score > 0.5)
        label = pred if rng.random() < accuracy[v] else 1 - pred
        out.append(
            (
                {
                    "model": "m",
                    "id": f"p{i}",
                    "timestamp": T0 + i,
                    "features": {"x": x},
                    "prediction": pred,
                    "score": score,
                    "model_version": v,
                },
                {"model": "m", "id": f"p{i}", "label": label},
            )
        )
    return out


def recs(topic, pairs):
    objs = (
        [p if topic == "p" else lab for p, lab in pairs]
        if pairs and isinstance(pairs[0], tuple)
        else pairs
    )
    return [Record(topic, 0, i, None, json.dumps(o).encode(), 0.0) for i, o in enumerate(objs)]


def feed(pipe, pairs, now):
    pipe.apply(recs("p", pairs), now=now)
    pipe.apply(recs("l", pairs), now=now)
    [(ev, notes)] = pipe.evaluate(now)
    return ev, [n for n in notes if n.rule == "version_regression"]


def canary_pipeline(tmp_path, **kw):
    return build_pipeline(
        parsed(tmp_path, versions={"max_versions": 5, "regression": REGRESSION}, **kw)
    )


def test_worse_canary_fires_rollback_then_resolves_when_it_recovers(tmp_path):
    pipe = canary_pipeline(tmp_path)
    ev, notes = feed(pipe, canary(1, 200, {"v1": 0.9}), T0 + 1000)
    assert ev.version_newest == "v1" and ev.version_previous is None and notes == []
    ev, notes = feed(pipe, canary(2, 1000, {"v1": 0.9, "v2": 0.6}, start=200), T0 + 2000)
    assert ev.breaches["version_regression"] and ev.hysteresis.versions == ("v2", "v1")
    [note] = notes
    assert note.type == "rollback.recommended"
    by = {v.version: v for v in ev.versions}
    block = note.body["versions"]
    for role, name in (("newest", "v2"), ("previous", "v1")):
        assert block[role] == {
            "version": name,
            "metric": "accuracy",
            "value": by[name].performance["accuracy"],
            "labeled_events": by[name].labeled_events,
        }
    assert block["newest"]["value"] < block["previous"]["value"] - 0.05
    assert ev.to_dict()["breaches"]["version_regression"] is True
    assert [v["version"] for v in ev.to_dict()["versions"]] == ["v1", "v2"]
    # still worse: no repeat
    ev, notes = feed(pipe, canary(3, 200, {"v1": 0.9, "v2": 0.6}, start=1200), T0 + 2100)
    assert ev.version_regression and notes == []
    # v2 recovers over a whole window: resolved
    ev, notes = feed(pipe, canary(4, 1000, {"v1": 0.9, "v2": 0.9}, start=1400), T0 + 3000)
    assert not ev.version_regression
    [note] = notes
    assert note.type == "resolved" and note.body["versions"]["newest"]["version"] == "v2"


def test_resolves_when_the_previous_version_stops_serving(tmp_path):
    pipe = canary_pipeline(tmp_path)
    feed(pipe, canary(1, 200, {"v1": 0.9}), T0 + 1000)
    ev, notes = feed(pipe, canary(2, 1000, {"v1": 0.9, "v2": 0.6}, start=200), T0 + 2000)
    assert [n.type for n in notes] == ["rollback.recommended"]
    # the rollout completes: v1 leaves the window, v2 (still worse than v1 was) alone
    ev, notes = feed(pipe, canary(3, 1100, {"v2": 0.6}, start=1200), T0 + 3000)
    assert [v.version for v in ev.versions] == ["v2"]
    assert ev.version_previous is None and not ev.version_regression
    [note] = notes
    assert note.type == "resolved" and note.body["versions"]["previous"] is None


def test_better_canary_does_not_notify(tmp_path):
    pipe = canary_pipeline(tmp_path)
    feed(pipe, canary(1, 200, {"v1": 0.75}), T0 + 1000)
    ev, notes = feed(pipe, canary(2, 1000, {"v1": 0.75, "v2": 0.95}, start=200), T0 + 2000)
    assert ev.version_newest == "v2" and ev.version_previous == "v1"
    assert not ev.version_regression and notes == []


def test_no_decision_below_min_labels(tmp_path):
    pipe = canary_pipeline(tmp_path)
    feed(pipe, canary(1, 200, {"v1": 0.9}), T0 + 1000)
    pairs = canary(2, 150, {"v1": 0.9, "v2": 0.3}, start=200)  # ~75 labelled v2 predictions
    ev, notes = feed(pipe, pairs, T0 + 2000)
    assert ev.versions[1].labeled_events < 100 and not ev.version_regression and notes == []


def test_unversioned_events_are_in_no_version(tmp_path):
    pipe = canary_pipeline(tmp_path)
    pairs = canary(1, 300, {"v1": 0.9})
    for p, _ in pairs[::3]:
        del p["model_version"]
    ev, _ = feed(pipe, pairs, T0 + 1000)
    assert ev.window_events == 300 and [(v.version, v.events) for v in ev.versions] == [("v1", 200)]


def test_models_without_the_rule_still_report_versions(tmp_path):
    pipe = build_pipeline(parsed(tmp_path, label_topic=None))
    ev, notes = feed(pipe, canary(1, 400, {"v1": 0.9, "v2": 0.1}), T0 + 1000)
    assert [v.version for v in ev.versions] == ["v1", "v2"] or [v.version for v in ev.versions] == [
        "v2",
        "v1",
    ]
    assert all(v.labeled_events == 0 for v in ev.versions)
    assert ev.version_metric is None and not ev.version_regression and notes == []
    assert ev.to_dict()["version_regression"] is None


def test_webhook_formats_carry_the_versions_block(tmp_path):
    pipe = canary_pipeline(tmp_path)
    feed(pipe, canary(1, 200, {"v1": 0.9}), T0 + 1000)
    _, [note] = feed(pipe, canary(2, 1000, {"v1": 0.9, "v2": 0.6}, start=200), T0 + 2000)
    github = shape("github", note.body)
    assert github["event_type"] == "driftwatch.rollback.recommended"
    payload = github["client_payload"]
    assert len(payload) <= 10 and payload["versions"] == note.body["versions"]
    assert "data_quality" not in payload  # its place is the versions block's, for this rule
    assert shape("airflow", note.body)["conf"]["versions"] == note.body["versions"]
    slack = json.dumps(shape("slack", note.body))
    assert "Rollback recommended" in slack and "`v2`" in slack and "`v1`" in slack
    # the other rules' bodies: versions null, github unchanged
    body = {**note.body, "rule": "feature_drift", "versions": None}
    assert "data_quality" in shape("github", body)["client_payload"]


# -- checkpoints ------------------------------------------------------------------------------
def _loaded(tmp_path, pairs, **versions):
    cfg = parsed(tmp_path, versions={"max_versions": 5, "regression": REGRESSION, **versions})
    monitor = build_monitor(cfg.models[0])
    pipe = build_pipeline(cfg)
    pipe.monitors["m"] = monitor
    pipe.apply(recs("p", pairs), now=T0 + 2000)
    pipe.apply(recs("l", pairs[: len(pairs) // 2]), now=T0 + 2000)
    return monitor


def test_checkpoint_round_trip_keeps_the_version_window(tmp_path):
    pairs = canary(1, 1500, {"v1": 0.9, "v2": 0.6, "v3": 0.8})
    monitor = _loaded(tmp_path, pairs)
    blob = codec.encode(*monitor.state())
    again = build_monitor(
        parsed(tmp_path, versions={"max_versions": 5, "regression": REGRESSION}).models[0]
    )
    again.restore(*codec.decode(blob))
    a, b = monitor.evaluate(T0 + 2000), again.evaluate(T0 + 2000)
    assert a.versions == b.versions and len(a.versions) == 3
    assert again.versions.slot_of == monitor.versions.slot_of
    assert again.versions.counter == monitor.versions.counter
    # the join keeps each waiting prediction's version slot: late labels land per version
    rest = [Label("m", lab["id"], str(lab["label"]), T0 + 2000) for _, lab in pairs[750:]]
    monitor.ingest_labels(rest, T0 + 2000)
    again.ingest_labels(rest, T0 + 2000)
    assert monitor.evaluate(T0 + 2000).versions == again.evaluate(T0 + 2000).versions


def test_old_checkpoint_restores_with_an_empty_version_window(tmp_path, caplog):
    pairs = canary(1, 795, {"v1": 0.9, "v2": 0.6})  # the newest pane is part full
    monitor = _loaded(tmp_path, pairs)
    meta, arrays = monitor.state()
    del meta["versions"]
    arrays = {k: v for k, v in arrays.items() if not k.startswith("versions.")}
    for row in meta["join"]["predictions"]:
        del row[7:]  # the join's rows before model versions
    again = build_monitor(parsed(tmp_path, versions={"max_versions": 5}).models[0])
    with caplog.at_level(logging.INFO, "driftwatch.monitor.versions"):
        again.restore(*codec.decode(codec.encode(meta, arrays)))
    assert "no model-version state" in caplog.text
    assert again.window.events == 795 and again.evaluate(T0 + 2000).versions == ()
    assert all(w.version == -1 for w in again.join.predictions.values())
    # and it keeps working: new events are counted per version
    again.ingest_batch(
        [Prediction("m", f"n{i}", T0 + 3000, {"x": 0.0}, "1", 0.5, {}, "v9") for i in range(20)]
    )
    assert [(v.version, v.events) for v in again.evaluate(T0 + 3000).versions] == [("v9", 20)]
    main, ver = again.window, again.versions.window
    assert [(p.key, p.n) for p in main._panes] == [(p.key, p.n) for p in ver._panes]


def test_changed_max_versions_starts_the_version_window_empty(tmp_path, caplog):
    monitor = _loaded(tmp_path, canary(1, 800, {"v1": 0.9, "v2": 0.6}))
    again = build_monitor(parsed(tmp_path, versions={"max_versions": 3}).models[0])
    with caplog.at_level(logging.INFO, "driftwatch.monitor.versions"):
        again.restore(*monitor.state())
    assert "max_versions 5 (now 3)" in caplog.text
    assert again.window.events == 800 and again.evaluate(T0 + 2000).versions == ()


def test_reload_adoption_keeps_the_version_window(tmp_path):
    pipe = canary_pipeline(tmp_path)
    feed(pipe, canary(1, 800, {"v1": 0.9, "v2": 0.6}), T0 + 1000)
    before = pipe.monitors["m"].evaluate(T0 + 1000).versions
    fresh = build_pipeline(
        parsed(
            tmp_path, versions={"max_versions": 5, "regression": {**REGRESSION, "max_drop": 0.1}}
        )
    )
    pipe.adopt(fresh, {"m"}, None)
    assert pipe.monitors["m"] is fresh.monitors["m"]
    assert pipe.monitors["m"].evaluate(T0 + 1000).versions == before


def test_join_checkpoint_without_version_field_restores_minus_one():
    join = LabelJoin()
    join.restore(
        {
            "predictions": [["a", 3, "1", 0.5, T0, [0], False]],
            "labels": [],
            "gone": [],
            "dropped": {},
        }
    )
    assert join.predictions["a"].version == -1
    assert join.state()["predictions"][0][-1] == -1


def test_hysteresis_reads_checkpoints_from_before_versions():
    old = Hysteresis(frozenset({"x"}), True).to_dict()
    del old["versions"]
    assert Hysteresis.from_dict(old).versions is None
    h = Hysteresis(versions=("v2", "v1"))
    assert Hysteresis.from_dict(json.loads(json.dumps(h.to_dict()))) == h


# -- config -----------------------------------------------------------------------------------
def problems(tmp_path, **kw):
    classification_reference(tmp_path / "ref.csv")
    with pytest.raises(ConfigError) as err:
        parse_config(config(tmp_path, **kw), tmp_path)
    return "\n".join(err.value.problems)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"versions": {"regression": {"metric": "mae"}}},
            "models[0].versions.regression.metric: mae does not fit task classification",
        ),
        (
            {"versions": {"regression": {"metric": "accuracy"}}, "label_topic": None},
            "models[0].versions.regression: needs kafka.label_topic",
        ),
        ({"versions": {"max_versions": 0}}, "models[0].versions.max_versions"),
        ({"versions": {"max_version": 3}}, "models[0].versions.max_version: unknown key"),
        (
            {"versions": {"regression": {"metric": "accuracy", "max_drop": -1}}},
            "models[0].versions.regression.max_drop",
        ),
        (
            {"versions": {"regression": {"metric": "accuracy", "min_labels": 0}}},
            "models[0].versions.regression.min_labels",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path, kw, message):
    assert message in problems(tmp_path, **kw)


def test_versions_default_to_five_without_a_rule(tmp_path):
    cfg = parsed(tmp_path)
    assert cfg.models[0].versions.max_versions == 5 and cfg.models[0].versions.regression is None
    monitor = build_monitor(cfg.models[0])
    assert monitor.versions.max_versions == 5 and monitor.spec.versions is None


def test_roc_auc_regression_needs_scores(tmp_path):
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(0, 1, 500), "prediction": rng.integers(0, 2, 500)}).to_csv(
        tmp_path / "ref.csv", index=False
    )
    cfg = parse_config(config(tmp_path, versions={"regression": {"metric": "roc_auc"}}), tmp_path)
    with pytest.raises(DriftwatchError, match=r"versions\.regression\.metric roc_auc"):
        build_monitor(cfg.models[0])


def test_a_version_window_started_empty_at_restore_makes_waiting_labels_forget_slots(tmp_path):
    """A checkpoint made with another max_versions restores with empty version figures;
    the predictions waiting for labels must forget their old slots, or their labels land
    on whichever version takes that slot next (review: 800 labels on 300 events)."""
    old = build_pipeline(parsed(tmp_path, versions={"max_versions": 5, "regression": REGRESSION}))
    first = canary(3, 60, {"a": 0.9, "b": 0.9})
    old.apply(recs("p", first), now=T0 + 100)
    meta, arrays = old.monitors["m"].state()
    new = build_pipeline(parsed(tmp_path, versions={"max_versions": 2, "regression": REGRESSION}))
    new.monitors["m"].restore(meta, arrays)
    assert all(w.version == -1 for w in new.monitors["m"].join.predictions.values())
    fresh = canary(4, 30, {"fresh": 0.9}, start=60)
    new.apply(recs("p", fresh), now=T0 + 200)
    new.apply(recs("l", first), now=T0 + 300)  # the old predictions' labels, no crash
    [(ev, _)] = new.evaluate(T0 + 300)
    assert [(v.version, v.events, v.labeled_events) for v in ev.versions] == [("fresh", 30, 0)]
