"""Performance over the window's labelled predictions, maintained from counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.sources.base import Record
from driftwatch.stats import performance as perf


def classification_reference(path: Path, seed: int = 0, n: int = 4000) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    score = 1 / (1 + np.exp(-2 * x))
    pd.DataFrame(
        {
            "x": x,
            "seg": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
            "score": score,
            "prediction": (score > 0.5).astype(int),
            "label": (rng.random(n) < score).astype(int),
        }
    ).to_csv(path, index=False)


def config(tmp_path, metric="accuracy", task="classification", window=1000, **model):
    m = {
        "name": "m",
        "task": task,
        "reference": "ref.csv",
        "window": {"events": window},
        "features": {"x": "numerical"},
        "performance": {"metric": metric, "min_labels": 10, "max_drop": 0.05},
    }
    m.update(model)
    return parse_config(
        {
            "kafka": {
                "bootstrap_servers": ["x:1"],
                "prediction_topic": "p",
                "label_topic": "l",
                "min_timestamp": 0,  # the stream's times start at 1970 + 1000 s
            },
            "models": [m],
        },
        tmp_path,
    )


def stream(seed, n, flip=False, start=0):
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for i in range(start, start + n):
        x = float(rng.normal())
        s = 1 / (1 + np.exp(-2 * x))
        y = int(rng.random() < s)
        if flip:
            y = 1 - y
        preds.append(
            {
                "model": "m",
                "id": f"p{i}",
                "timestamp": 1000.0 + i,
                "features": {"x": x, "seg": str(rng.choice(["a", "b", "z"]))},
                "prediction": int(s > 0.5),
                "score": s,
            }
        )
        labels.append({"model": "m", "id": f"p{i}", "label": y, "timestamp": 1000.0 + i + 30})
    return preds, labels


def recs(topic, objs):
    return [Record(topic, 0, i, None, json.dumps(o).encode(), 0.0) for i, o in enumerate(objs)]


def test_classification_metrics_equal_exact_values_over_the_window(tmp_path):
    classification_reference(tmp_path / "ref.csv")
    pipe = build_pipeline(config(tmp_path, metric="roc_auc", segments=["seg"]))
    preds, labels = stream(1, 2500)
    keep = [lab for i, lab in enumerate(labels) if i % 3]  # a third never labelled
    pipe.apply(recs("l", keep[:300]), now=900.0)  # labels first, for the oldest predictions
    pipe.apply(recs("p", preds), now=3600.0)
    pipe.apply(recs("l", keep[300:]), now=3600.0)
    [(ev, _)] = pipe.evaluate(3600.0)

    held = preds[-ev.window_events :]
    ids = {p["id"] for p in held}
    lab = {x["id"]: x["label"] for x in keep if x["id"] in ids}
    pairs = [(p, lab[p["id"]]) for p in held if p["id"] in lab]
    y = np.array([str(v) for _, v in pairs])
    yhat = np.array([str(p["prediction"]) for p, _ in pairs])
    score = np.array([p["score"] for p, _ in pairs])
    assert ev.labeled_events == len(pairs)
    assert ev.label_coverage == pytest.approx(len(pairs) / ev.window_events)
    tp, fp, fn, tn = perf.confusion(y, yhat, "1")
    correct = int(np.sum(y == yhat))
    for metric in ("accuracy", "precision", "recall", "f1"):
        assert ev.performance[metric] == pytest.approx(
            perf.from_confusion(metric, tp, fp, fn, tn, correct)
        )
    assert abs(ev.performance["roc_auc"] - perf.roc_auc(y == "1", score)) <= 0.005
    assert 0.8 < ev.performance_reference["roc_auc"] < 0.95

    # segments: values seen in the reference by frequency, the rest pooled
    segs = {s.value: s for s in ev.segments}
    assert list(segs) == ["a", "b", "c", "__other__"]
    for value, s in segs.items():
        members = [
            p
            for p in held
            if (p["features"]["seg"] if p["features"]["seg"] in "abc" else "__other__") == value
        ]
        assert s.events == len(members)
        assert s.labeled_events == sum(1 for p in members if p["id"] in lab)
        if s.labeled_events:
            sy = [str(lab[p["id"]]) for p in members if p["id"] in lab]
            sh = [str(p["prediction"]) for p in members if p["id"] in lab]
            assert s.performance["accuracy"] == pytest.approx(perf.accuracy(sy, sh))


def test_concept_change_breaches_the_performance_rule(tmp_path):
    classification_reference(tmp_path / "ref.csv")
    pipe = build_pipeline(config(tmp_path, metric="accuracy", window=500))
    preds, labels = stream(2, 600)
    pipe.apply(recs("p", preds) + recs("l", labels), now=2000.0)
    [(ev, notes)] = pipe.evaluate(2000.0)
    assert abs(ev.performance["accuracy"] - ev.performance_reference["accuracy"]) < 0.05
    assert not ev.performance_breach and notes == []
    preds, labels = stream(3, 600, flip=True, start=600)
    pipe.apply(recs("p", preds) + recs("l", labels), now=3000.0)
    [(ev, notes)] = pipe.evaluate(3000.0)
    assert ev.performance["accuracy"] < 0.4
    assert not ev.drifted_features
    assert [(n.rule, n.type) for n in notes] == [("performance", "performance.degraded")]
    block = notes[0].body["performance"]
    assert block["metric"] == "accuracy" and block["current"] < block["reference"] - 0.05
    assert notes[0].body["window"]["labeled_events"] == ev.labeled_events


def test_regression_mae_rmse_from_error_sums(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, 3000)
    pd.DataFrame({"x": x, "prediction": 2 * x, "label": 2 * x + rng.normal(0, 0.5, 3000)}).to_csv(
        tmp_path / "ref.csv", index=False
    )
    pipe = build_pipeline(config(tmp_path, metric="rmse", task="regression", window=400))
    xs = rng.normal(0, 1, 700)
    ys = 2 * xs + rng.normal(0, 1.5, 700)
    preds = [
        {
            "model": "m",
            "id": str(i),
            "timestamp": float(i),
            "features": {"x": float(xs[i])},
            "prediction": float(2 * xs[i]),
        }
        for i in range(700)
    ]
    labels = [{"model": "m", "id": str(i), "label": float(ys[i])} for i in range(700)]
    pipe.apply(recs("p", preds) + recs("l", labels), now=1000.0)
    [(ev, notes)] = pipe.evaluate(1000.0)
    held = range(700 - ev.window_events, 700)
    err = np.array([2 * xs[i] - ys[i] for i in held])
    assert ev.performance["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert ev.performance["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert ev.performance_breach  # error rose from ~0.5 to ~1.5
    assert [n.type for n in notes] == ["performance.degraded"]


def test_performance_needs_reference_columns(tmp_path):
    pd.DataFrame({"x": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "ref.csv", index=False)
    from driftwatch.errors import DriftwatchError

    with pytest.raises(DriftwatchError, match="needs label and prediction columns"):
        build_pipeline(config(tmp_path))
