"""The web page's data: the bounded per-model ring of evaluations, and the reference vs
current PSI-bin distributions read from a real pipeline's windows."""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml

from driftwatch.app import build_pipeline
from driftwatch.config import load_config, parse_config
from driftwatch.daemon import Daemon
from driftwatch.monitor.history import (
    History,
    Point,
    distributions,
    history_document,
)
from driftwatch.monitor.results import Evaluation, FeatureResult
from driftwatch.sources.base import Record
from tests.helpers import COLORS, events, reference_frame
from tests.unit.test_pipeline import config_dict


def evaluation(model: str, t: float, psi: float = 0.05, **over) -> Evaluation:
    fields = {
        "model": model,
        "evaluated_at": t,
        "window_events": 1000,
        "window_oldest": None,
        "window_newest": None,
        "features": (
            FeatureResult("x", "numerical", psi, 0.1, 0.5, psi >= 0.2),
            FeatureResult("c", "categorical", math.nan, None, None, False),
        ),
        "prediction_psi": None,
        "prediction_drift": False,
        "enough_events": True,
    }
    fields.update(over)
    return Evaluation(**fields)  # type: ignore[arg-type]


def test_the_ring_keeps_the_newest_evaluations_per_model_oldest_first():
    h = History(length=5)
    for i in range(12):
        h.record([evaluation("a", float(i)), *([evaluation("b", float(i))] if i % 2 else [])])
    assert [p.evaluated_at for p in h.points("a")] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert [p.evaluated_at for p in h.points("b")] == [3.0, 5.0, 7.0, 9.0, 11.0]
    assert [p.evaluated_at for p in h.points("a", limit=2)] == [10.0, 11.0]
    assert [p.evaluated_at for p in h.points("a", limit=0)] == []
    assert h.points("a", limit=99) == h.points("a")
    assert h.points("nope") == []
    h.retain({"b"})
    assert h.models() == ["b"] and h.points("a") == []
    with pytest.raises(ValueError):
        History(length=0)


def test_since_gives_only_the_newer_points_and_a_snapshot_copies_every_ring_at_once():
    h = History(length=5)
    for i in range(8):
        h.record([evaluation("a", float(i)), *([evaluation("b", float(i))] if i < 2 else [])])
    assert [p.evaluated_at for p in h.points("a", since=5.0)] == [6.0, 7.0]
    assert [p.evaluated_at for p in h.points("a", since=5.5)] == [6.0, 7.0]
    assert h.points("a", since=7.0) == [] and h.points("a", since=99.0) == []
    assert [p.evaluated_at for p in h.points("a", since=-1.0)] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert [p.evaluated_at for p in h.points("a", limit=1, since=4.0)] == [7.0]
    assert h.points("a", limit=0, since=4.0) == []
    snap = h.snapshot(["a", "b", "nope"], since=5.0)
    assert [p.evaluated_at for p in snap["a"].points] == [6.0, 7.0]
    assert (snap["a"].kept, snap["a"].oldest) == (5, 3.0)
    assert (snap["b"].points, snap["b"].kept, snap["b"].oldest) == ([], 2, 0.0)
    assert (snap["nope"].points, snap["nope"].kept, snap["nope"].oldest) == ([], 0, None)
    assert [p.evaluated_at for p in h.snapshot(["a"], limit=2)["a"].points] == [6.0, 7.0]


def test_a_point_keeps_the_unrounded_figures_and_json_has_no_nan():
    psi = 0.123456789012345
    ev = evaluation(
        "a",
        5.0,
        psi=psi,
        labeled_events=400,
        performance={"accuracy": 0.8123456789},
        performance_reference={"accuracy": 0.9},
        performance_metric="accuracy",
        performance_breach=True,
        scored_events=1000,
        performance_estimated={"accuracy": 0.85, "f1": 0.7},
    )
    p = Point.of(ev)
    d = p.to_dict()
    assert d["features"]["x"] == {"psi": psi, "drift": False}  # not /status's 6 places
    assert d["features"]["c"] == {"psi": None, "drift": False}  # NaN: no figure
    assert d["breaches"] == ["performance"]
    assert d["performance"] == {"metric": "accuracy", "current": 0.8123456789, "reference": 0.9}
    # without an estimated_performance rule the estimate is of the performance metric
    assert d["estimated"] == {"metric": "accuracy", "value": 0.85, "reference": None}
    assert d["window_events"] == 1000 and d["labeled_events"] == 400
    assert json.loads(orjson.dumps(d)) == d
    plain = Point.of(evaluation("a", 6.0, psi=0.3)).to_dict()
    assert plain["estimated"] is None and plain["performance"]["metric"] is None
    assert plain["breaches"] == ["feature_drift"] and plain["drifted_features_ratio"] == 0.5


def test_readers_copy_while_the_evaluation_thread_writes():
    h = History(length=50)
    stop = threading.Event()
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            pts = h.points("a")
            times = [p.evaluated_at for p in pts]
            if len(pts) > 50 or times != sorted(times):
                problems.append(f"{len(pts)} points, out of order: {times[:5]}")

    readers = [threading.Thread(target=read) for _ in range(3)]
    for r in readers:
        r.start()
    try:
        for i in range(20_000):
            h.record([evaluation("a", float(i))])
    finally:
        stop.set()
        for r in readers:
            r.join()
    assert problems == []
    assert [p.evaluated_at for p in h.points("a")][-1] == 19_999.0


def records(evs, start=0):
    return [Record("p", 0, start + i, b"m", json.dumps(e).encode(), 0.0) for i, e in enumerate(evs)]


def test_history_document_and_distributions_of_a_real_pipeline(tmp_path: Path):
    cfg = parse_config(config_dict(tmp_path), tmp_path)
    pipe = build_pipeline(cfg)
    h = History()
    empty = distributions(pipe)["models"]["m"]
    assert empty["window_events"] == 0 and empty["features"]["x1"]["current"] is None
    evs = events(3, 1000, shift=("x2", "color"))
    pipe.apply(records(evs))
    results = pipe.evaluate(100.0)
    h.record([ev for ev, _ in results])
    [(ev, _)] = results

    doc = history_document(h, pipe)
    model = doc["models"]["m"]
    assert model["drift_rule"]["threshold"] == 0.2 and model["drift_rule"]["share"] == 0.75
    assert "feature_drift" in model["rules"] and "performance" not in model["rules"]
    [point] = model["evaluations"]
    assert {f: v["psi"] for f, v in point["features"].items()} == {
        f.feature: f.psi for f in ev.features
    }
    assert point["features"]["x2"]["drift"] is True
    assert history_document(h, pipe, limit=0)["models"]["m"]["evaluations"] == []
    assert (model["kept"], model["oldest_evaluated_at"]) == (1, 100.0)
    pipe.apply(records(evs[:10], start=1000))
    h.record([ev for ev, _ in pipe.evaluate(115.0)])
    newer = history_document(h, pipe, since=100.0)["models"]["m"]
    assert [p["evaluated_at"] for p in newer["evaluations"]] == [115.0]
    assert (newer["kept"], newer["oldest_evaluated_at"]) == (2, 100.0)
    assert history_document(h, pipe, limit=5, since=115.0)["models"]["m"] == dict(
        newer, evaluations=[]
    )
    assert len(history_document(h, pipe, limit=1)["models"]["m"]["evaluations"]) == 1

    dist = distributions(pipe)["models"]["m"]
    assert dist["window_events"] == 1000
    ref = reference_frame()
    # numerical: the reference's deciles (CONTRACT section 4), each bin's share counted here
    x2 = dist["features"]["x2"]
    edges = np.asarray(x2["edges"])
    assert np.allclose(edges, np.unique(np.quantile(ref["x2"], np.linspace(0.1, 0.9, 9))))
    current = np.bincount(
        np.searchsorted(edges, [e["features"]["x2"] for e in evs], side="right"),
        minlength=edges.size + 1,
    )
    assert np.allclose(x2["current"], current / 1000)
    assert np.allclose(x2["reference"], [0.1] * 10, atol=0.002)
    assert len(x2["labels"]) == 10 and x2["labels"][0].startswith("< ")
    # categorical: one bin per reference category, then unseen ones
    color = dist["features"]["color"]
    assert color["categories"] == sorted(COLORS) and color["labels"][-1] == "(unseen)"
    seen = Counter(e["features"]["color"] for e in evs)
    assert color["current"] == pytest.approx([seen[c] / 1000 for c in sorted(COLORS)] + [0.0])
    assert sum(color["reference"]) == pytest.approx(1.0)
    assert dist["prediction"]["kind"] == "categorical"  # the reference's prediction column
    assert json.loads(orjson.dumps(distributions(pipe)))["models"]["m"]["features"]["x1"]

    pipe.own(["another"])  # a replica that does not own the model does not show it
    assert distributions(pipe)["models"] == {} and history_document(h, pipe)["models"] == {}


def test_the_daemon_keeps_the_history_of_the_models_it_owns_only(tmp_path: Path):
    """A replica that loses a model (a rebalance) drops its history at the next round, so
    the page never joins the points from before to those after the model comes back."""
    cfg = config_dict(tmp_path)
    cfg["models"].append(dict(cfg["models"][0], name="m2"))
    cfg["http"] = {"host": "127.0.0.1", "port": 0}
    cfg["state"] = {"path": str(tmp_path / "state")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    d = Daemon(load_config(path), config_path=path)
    d.http.start()
    try:
        d.evaluate()
        assert sorted(d.history.models()) == ["m", "m2"]
        d.pipeline.own(["m2"])  # "m" revoked
        d.evaluate()
        assert d.history.models() == ["m2"] and len(d.history.points("m2")) == 2
        d.pipeline.own(["m", "m2"])  # and back: it starts over
        d.evaluate()
        assert len(d.history.points("m")) == 1 and len(d.history.points("m2")) == 3
        d.pipeline.own(None)
        d.evaluate()
        assert sorted(d.history.models()) == ["m", "m2"]
    finally:
        d.http.stop()
        d.outbox.close()
