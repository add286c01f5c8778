"""Performance estimated without labels (CONTRACT section 10, ``monitor.estimated``):
calibration, expected confusion counts, accuracy against realized metrics, rule
``estimated_performance`` end to end with no label topic, config errors, webhook bodies."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from bench.cbpe_data import SHIFTS, Shift, allowed_error, realized, sample

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.errors import ConfigError, DriftwatchError
from driftwatch.monitor.estimated import ConfidenceEstimator, expected_calibration_error, pav
from driftwatch.monitor.model import layout_fingerprint
from driftwatch.monitor.results import Hysteresis
from driftwatch.sinks.webhook import GITHUB_PAYLOAD_KEYS, shape
from driftwatch.windows.reference import NumericalBins
from tests.unit.test_pipeline import records


# -- calibration ---------------------------------------------------------------------------
def brute_isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The isotonic regression's min-max formula: f_i = max_{j<=i} min_{k>=i} mean(j..k)."""
    n = y.size
    out = np.empty(n)
    for i in range(n):
        out[i] = max(
            min(float(np.dot(y[j : k + 1], w[j : k + 1]) / w[j : k + 1].sum()) for k in range(i, n))
            for j in range(i + 1)
        )
    return out


def test_pav_known_case():
    assert pav([1, 3, 2, 4], [1, 1, 1, 1]).tolist() == [1, 2.5, 2.5, 4]
    assert pav([3, 2, 1], [1, 1, 2]).tolist() == pytest.approx([1.75] * 3)
    assert pav([], []).size == 0


@pytest.mark.parametrize("seed", range(20))
def test_pav_is_monotone_and_equals_the_brute_force_fit(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 25))
    y = rng.random(n) + np.linspace(0, 0.5, n)
    w = rng.integers(1, 6, n).astype(float)
    fit = pav(y, w)
    assert np.all(np.diff(fit) >= -1e-12)
    np.testing.assert_allclose(fit, brute_isotonic(y, w), rtol=0, atol=1e-12)


def test_pav_rejects_bad_weights():
    with pytest.raises(ValueError):
        pav([1.0, 2.0], [1.0, 0.0])


def reference(seed: int = 0, n: int = 20_000, threshold: float = 0.5):
    s = sample(np.random.default_rng(seed), n, threshold=threshold)
    bins = NumericalBins.from_reference(s.score)
    return s, bins


def test_calibration_is_monotone_and_checked_on_the_reference():
    s, bins = reference()
    est = ConfidenceEstimator.build(bins, s.score, s.label == 1, s.prediction == 1)
    assert np.all(np.diff(est.probability) >= 0)
    assert np.all((est.probability >= 0) & (est.probability <= 1))
    assert est.calibration_error < 0.01  # calibrated scores stay calibrated
    assert est.raw_calibration_error < 0.02
    # the estimate on the reference's own scores is its realized performance
    for metric, value in realized(s).items():
        assert est.reference[metric] == pytest.approx(value, abs=0.01), metric


def test_miscalibrated_scores_are_recalibrated():
    """A monotone distortion of the score (here its cube) breaks the raw calibration, not
    the isotonic one; the predicted class still comes from the reference's predictions."""
    s, _ = reference(1)
    raw = s.score**3
    bins = NumericalBins.from_reference(raw)
    est = ConfidenceEstimator.build(bins, raw, s.label == 1, s.prediction == 1)
    assert est.raw_calibration_error > 0.15
    assert est.calibration_error < 0.01
    window = sample(np.random.default_rng(2), 5000, SHIFTS[3])
    counts = np.bincount(bins.bin(window.score**3), minlength=bins.nbins)
    got, want = est.estimate(counts), realized(window)
    for metric in ("accuracy", "f1", "roc_auc"):
        assert abs(got[metric] - want[metric]) < 0.03, metric


def test_expected_calibration_error_of_a_known_case():
    p = np.array([0.2, 0.8])
    assert expected_calibration_error(p, np.array([2.0, 8.0]), np.array([10.0, 10.0]), 2) == 0
    assert expected_calibration_error(p, np.array([0.0, 10.0]), np.array([10.0, 10.0]), 2) == (
        pytest.approx(0.2)
    )


# -- expected counts -----------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_expected_counts_equal_a_per_event_brute_force(seed):
    """Per event: P(positive) and P(predicted positive) of its score's bin, summed, and the
    expected AUC over every pair of events (pairs in one bin count half)."""
    s, bins = reference(seed, 5000, threshold=0.4)
    est = ConfidenceEstimator.build(bins, s.score, s.label == 1, s.prediction == 1)
    rng = np.random.default_rng(100 + seed)
    window = sample(rng, 400, SHIFTS[int(rng.integers(len(SHIFTS)))])
    b = bins.bin(window.score)
    p, q = est.probability[b], est.predicted_positive[b]
    counts = np.bincount(b, minlength=bins.nbins)
    tp, fp, fn, tn = est.confusion(counts)
    assert tp == pytest.approx(np.sum(p * q))
    assert fp == pytest.approx(np.sum((1 - p) * q))
    assert fn == pytest.approx(np.sum(p * (1 - q)))
    assert tn == pytest.approx(np.sum((1 - p) * (1 - q)))
    got = est.estimate(counts)
    assert got["accuracy"] == pytest.approx((tp + tn) / 400)
    assert got["precision"] == pytest.approx(tp / (tp + fp))
    assert got["recall"] == pytest.approx(tp / (tp + fn))
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    above = (b[:, None] > b[None, :]) + 0.5 * (b[:, None] == b[None, :])
    pairs = p[:, None] * (1 - p)[None, :]
    assert got["roc_auc"] == pytest.approx(np.sum(pairs * above) / (p.sum() * (1 - p).sum()))


def test_only_the_bin_holding_the_threshold_is_split():
    """Of the bins holding reference rows, only the one whose interval holds the threshold
    is split; bins the reference never reached between the two classes (here the empty
    equality bins at interpolated quantile edges) take 0.5, at no reference mass."""
    s, bins = reference(3, threshold=0.37)
    est = ConfidenceEstimator.build(bins, s.score, s.label == 1, s.prediction == 1)
    held = np.bincount(bins.bin(s.score), minlength=bins.nbins) > 0
    q = est.predicted_positive
    assert ((q > 0) & (q < 1) & held).sum() <= 1
    lower, upper = bins.bin_bounds
    assert np.all(q[lower >= 0.37] > 0) and np.all(q[(lower >= 0.37) & held] == 1)
    assert np.all(q[upper < 0.37] < 1) and np.all(q[(upper < 0.37) & held] == 0)
    assert np.all(np.diff(q) >= 0)


def test_an_empty_window_estimates_nothing():
    s, bins = reference(4, 2000)
    est = ConfidenceEstimator.build(bins, s.score, s.label == 1)
    got = est.estimate(np.zeros(bins.nbins))
    assert all(math.isnan(v) for v in got.values())


def test_one_class_references_are_refused():
    s, bins = reference(5, 1000)
    with pytest.raises(ValueError, match="both classes"):
        ConfidenceEstimator.build(bins, s.score, np.ones(1000, dtype=bool))


# -- accuracy against the realized metrics -------------------------------------------------
@pytest.mark.parametrize("k", range(len(SHIFTS)), ids=[s.name for s in SHIFTS])
def test_estimate_is_within_003_of_the_realized_metric_under_covariate_shift(k: int):
    """Seeded, exact windows of 5,000. Precision in a window with few predicted positives
    is allowed its own sampling error (two binomial standard errors, if above 0.03)."""
    s, bins = reference(10)
    est = ConfidenceEstimator.build(bins, s.score, s.label == 1, s.prediction == 1)
    window = sample(np.random.default_rng(1000 + k), 5000, SHIFTS[k])
    got = est.estimate(np.bincount(bins.bin(window.score), minlength=bins.nbins))
    want = realized(window)
    for metric in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        allowed = max(0.03, allowed_error(metric, want[metric], window))
        assert abs(got[metric] - want[metric]) < allowed, (metric, got[metric], want[metric])


ALERTS = {"consecutive": 1, "cooldown_seconds": 0, "resolve_ratio": 0.5}


def config(tmp_path: Path, estimate: bool = True, labels: bool = False, **perf: Any):
    s = sample(np.random.default_rng(0), 20_000)
    pd.DataFrame(
        {"x1": s.x1, "x2": s.x2, "score": s.score, "prediction": s.prediction, "label": s.label}
    ).to_csv(tmp_path / "ref.csv", index=False)
    kafka: dict[str, Any] = {"bootstrap_servers": ["127.0.0.1:1"], "prediction_topic": "p"}
    if labels:
        kafka["label_topic"] = "l"
    model = {
        "name": "m",
        "reference": "ref.csv",
        "window": {"events": 2000},
        "features": {"x1": "numerical", "x2": "numerical"},
        "drift": {"threshold": 0.2, "min_events": 200},
        "performance": {"metric": "accuracy", "max_drop": 0.05, "min_labels": 500}
        | ({"estimate": True} if estimate else {})
        | perf,
        "alerts": ALERTS,
        "webhooks": ["retrain"],
    }
    return {
        "kafka": kafka,
        "evaluation": {"interval_seconds": 100},
        "webhooks": {"retrain": {"url": "http://127.0.0.1:1/x"}},
        "models": [model],
    }


def scored_events(seed: int, n: int, shift: Shift, start: int) -> list[dict[str, Any]]:
    s = sample(np.random.default_rng(seed), n, shift)
    return [
        {
            "model": "m",
            "id": f"e-{start + i}",
            "timestamp": 1_790_000_000.0 + start + i,
            "features": {"x1": float(s.x1[i]), "x2": float(s.x2[i])},
            "prediction": int(s.prediction[i]),
            "score": float(s.score[i]),
        }
        for i in range(n)
    ]


def test_rule_fires_with_no_label_topic_and_resolves(tmp_path):
    pipe = build_pipeline(parse_config(config(tmp_path), tmp_path))
    pipe.apply(records(scored_events(1, 2000, SHIFTS[0], 0)))
    [(ev, notes)] = pipe.evaluate(100.0)
    assert ev.labeled_events == 0 and ev.scored_events == 2000
    assert ev.performance == {} and ev.performance_metric is None  # nothing measured
    assert ev.estimated_metric == "accuracy"
    assert abs(ev.performance_estimated["accuracy"] - ev.estimated_reference) < 0.02
    assert not ev.breaches["estimated_performance"] and notes == []

    # scores squeezed towards the boundary: accuracy falls from ~0.77 to ~0.6
    pipe.apply(records(scored_events(2, 2000, SHIFTS[6], 2000), start=2000))
    [(ev, notes)] = pipe.evaluate(200.0)
    assert ev.breaches["estimated_performance"]
    [note] = [n for n in notes if n.rule == "estimated_performance"]
    assert note.type == "performance.degraded"
    perf = note.body["performance"]
    assert perf["estimated"] is True and perf["metric"] == "accuracy"
    assert perf["scored_events"] == 2000
    assert perf["reference"] - perf["current"] > 0.05
    assert ev.hysteresis.estimated
    status = ev.to_dict()
    assert status["breaches"]["estimated_performance"] is True
    assert status["performance"]["estimated"]["accuracy"] == pytest.approx(perf["current"], 1e-5)
    assert status["performance"]["scored_events"] == 2000

    pipe.apply(records(scored_events(3, 2000, SHIFTS[0], 4000), start=4000))
    [(ev, notes)] = pipe.evaluate(300.0)
    assert not ev.breaches["estimated_performance"]
    assert [n.type for n in notes if n.rule == "estimated_performance"] == ["resolved"]


def test_estimates_are_computed_without_the_rule_and_min_events_holds(tmp_path):
    pipe = build_pipeline(parse_config(config(tmp_path, estimate=False, labels=True), tmp_path))
    pipe.apply(records(scored_events(1, 300, SHIFTS[6], 0)))
    [(ev, _)] = pipe.evaluate(100.0)
    assert set(ev.performance_estimated) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert ev.estimated_metric is None and not ev.breaches["estimated_performance"]
    # the measured rule's body says it is not estimated
    pipe2 = build_pipeline(parse_config(config(tmp_path, labels=True), tmp_path))
    pipe2.apply(records(scored_events(1, 300, SHIFTS[6], 0)))
    [(ev2, _)] = pipe2.evaluate(100.0)
    assert ev2.scored_events == 300 and not ev2.breaches["estimated_performance"]  # < 500


def test_layout_fingerprint_is_unchanged_by_the_estimate(tmp_path):
    with_est = build_pipeline(parse_config(config(tmp_path), tmp_path))
    without = build_pipeline(parse_config(config(tmp_path, estimate=False, labels=True), tmp_path))
    assert layout_fingerprint(with_est.monitors["m"]) == layout_fingerprint(without.monitors["m"])


def test_hysteresis_round_trips_and_reads_old_checkpoints():
    h = Hysteresis(estimated=True)
    assert Hysteresis.from_dict(h.to_dict()) == h
    old = h.to_dict()
    del old["estimated"]
    assert Hysteresis.from_dict(old).estimated is False


def test_webhook_formats_carry_the_estimated_block(tmp_path):
    pipe = build_pipeline(parse_config(config(tmp_path), tmp_path))
    pipe.apply(records(scored_events(2, 2000, SHIFTS[6], 0)))
    [(_, notes)] = pipe.evaluate(100.0)
    [note] = [n for n in notes if n.rule == "estimated_performance"]
    body = note.body
    github = shape("github", body)
    assert len(github["client_payload"]) <= 10
    assert set(github["client_payload"]) <= set(GITHUB_PAYLOAD_KEYS)
    assert github["client_payload"]["performance"]["estimated"] is True
    assert github["event_type"] == "driftwatch.performance.degraded"
    assert shape("airflow", body)["conf"]["performance"]["estimated"] is True
    text = str(shape("slack", body))
    assert "accuracy (estimated)" in text


# -- config errors -------------------------------------------------------------------------
def test_config_errors_name_the_key(tmp_path):
    data = config(tmp_path, estimate=False)  # no label topic, nothing to estimate with
    with pytest.raises(ConfigError) as exc:
        parse_config(data, tmp_path)
    assert any("models[0].performance" in p and "estimate" in p for p in exc.value.problems)
    data = config(tmp_path)
    data["models"][0]["performance"]["estimate"] = "maybe"
    with pytest.raises(ConfigError) as exc:
        parse_config(data, tmp_path)
    assert any("performance.estimate" in p for p in exc.value.problems)
    data = config(tmp_path)
    data["models"][0]["task"] = "regression"
    data["models"][0]["performance"]["metric"] = "mae"
    with pytest.raises(ConfigError) as exc:
        parse_config(data, tmp_path)
    assert any("performance.estimate" in p for p in exc.value.problems)


def test_a_reference_without_scores_is_refused(tmp_path):
    data = config(tmp_path)
    frame = pd.read_csv(tmp_path / "ref.csv").drop(columns=["score"])
    frame.to_csv(tmp_path / "ref.csv", index=False)
    with pytest.raises(DriftwatchError, match=r"performance\.estimate needs a score column"):
        build_pipeline(parse_config(data, tmp_path))


def test_empty_bins_on_a_known_side_of_the_decision_are_not_split():
    """A reference with scores rounded to 0.1 leaves whole open gaps between its values;
    a gap below its largest score predicted negative is predicted negative (it was once
    filled with the neighbours' mean, 0.5, and split), one above its smallest predicted
    positive is predicted positive; only a straddling gap keeps a fraction."""
    rng = np.random.default_rng(5)
    raw = rng.random(20_000)
    scores = np.round(raw, 1)
    labels = rng.random(20_000) < raw
    bins = NumericalBins.from_reference(scores)
    est = ConfidenceEstimator.build(bins, scores, labels)  # predicted: score >= 0.5
    lower, upper = bins.bin_bounds
    q = est.predicted_positive
    assert np.all(q[upper <= 0.4] == 0.0) and np.all(q[lower >= 0.5] == 1.0)
    # the open gap (0.4, 0.5): with the decision score >= 0.5 known, all of it negative
    assert np.all((q == 0.0) | (q == 1.0))
    # with a prediction column the decision is only known to lie in (0.4, 0.5]: split
    split = ConfidenceEstimator.build(bins, scores, labels, scores >= 0.5).predicted_positive
    assert ((split > 0) & (split < 1)).sum() == 1
    # live scores, continuous, as the reference's: the estimated recall is close to realized
    live = rng.random(20_000)
    y = rng.random(20_000) < live
    got = est.estimate(np.bincount(bins.bin(live), minlength=bins.nbins))
    yhat = live >= 0.5
    recall = (y & yhat).sum() / y.sum()
    assert abs(got["recall"] - recall) < 0.02


def test_a_model_whose_events_carry_no_score_is_said_once(tmp_path, caplog):
    pipe = build_pipeline(parse_config(config(tmp_path), tmp_path))
    events = scored_events(1, 600, SHIFTS[0], 0)
    for e in events:
        del e["score"]
    pipe.apply(records(events))
    with caplog.at_level("WARNING", logger="driftwatch.pipeline"):
        [(ev, _)] = pipe.evaluate(100.0)
        pipe.evaluate(101.0)
    assert ev.scored_events == 0 and not ev.breaches["estimated_performance"]
    assert caplog.text.count("none with a score") == 1
