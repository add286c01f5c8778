from __future__ import annotations

import numpy as np
import pytest

from driftwatch import stats
from driftwatch.detectors import DriftRule
from driftwatch.events.schema import Prediction
from driftwatch.monitor import ModelMonitor, MonitorSpec
from driftwatch.windows.reference import ReferenceProfile
from tests.helpers import FEATURES, events, reference_frame


def make(window_events=2000, window_seconds=None, min_events=500):
    ref = reference_frame()
    profile = ReferenceProfile.build(
        {str(c): ref[c].to_numpy() for c in ref}, FEATURES, "classification"
    )
    spec = MonitorSpec(
        "m",
        "classification",
        dict(FEATURES),
        DriftRule("psi", 0.2, min_events),
        window_events,
        window_seconds,
    )
    return ModelMonitor(spec, profile), ref


def preds(evs):
    return [
        Prediction(e["model"], e["id"], e["timestamp"], dict(e["features"]), str(e["prediction"]))
        for e in evs
    ]


def test_evaluation_equals_statistics_over_the_raw_window():
    mon, ref = make(window_events=2000)
    evs = events(5, 3000) + events(6, 1500, shift=("x1", "color"), start=3000)
    for i in range(0, len(evs), 333):
        mon.ingest_batch(preds(evs[i : i + 333]))
    ev = mon.evaluate(now=1.0)
    held = evs[len(evs) - ev.window_events :]
    assert 2000 <= ev.window_events < 2020
    by = {f.feature: f for f in ev.features}
    for name in ("x1", "x2", "x3"):
        cur = np.array([e["features"][name] for e in held])
        assert by[name].psi == pytest.approx(stats.psi(ref[name], cur), rel=1e-9)
        assert abs(by[name].ks_statistic - stats.ks(ref[name], cur)[0]) <= 0.01
    colors = [e["features"]["color"] for e in held]
    assert by["color"].psi == pytest.approx(stats.psi_categorical(list(ref["color"]), colors))
    assert {f.feature for f in ev.drifted_features} == {"x1", "color"}
    assert ev.drifted_ratio == 0.5
    assert ev.breaches == {
        "feature_drift": True,
        "prediction_drift": False,
        "dataset_drift": True,  # 2 of 4 features: the default share is 0.5
        "performance": False,
        "data_quality": False,  # no quality rule configured
        "version_regression": False,  # no version rule configured
        "estimated_performance": False,  # no estimated-performance rule configured
    }


def test_no_decision_below_min_events():
    mon, _ = make(min_events=500)
    mon.ingest_batch(preds(events(1, 499, shift=("x1",))))
    ev = mon.evaluate(0.0)
    assert not ev.enough_events
    assert not ev.drifted_features
    assert ev.features[0].psi > 0.2


def test_missing_values_are_counted_per_feature():
    mon, _ = make()
    p = preds(events(1, 10))
    for e in p[:3]:
        e.features["x2"] = None
    mon.ingest_batch(p)
    assert mon.missing["x2"] == 3 and mon.missing["x1"] == 0
    assert mon.window.events == 10


def test_time_window_monitor():
    mon, _ = make(window_events=None, window_seconds=100.0)
    mon.ingest_batch(preds(events(1, 300)))  # one event per second
    assert 100 <= mon.window.events <= 101
