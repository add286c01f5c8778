from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch.stats import performance as perf
from driftwatch.windows.reference import NumericalBins


def brute_auc(pos, score):
    p = [s for s, y in zip(score, pos, strict=True) if y]
    n = [s for s, y in zip(score, pos, strict=True) if not y]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(p, n))
    return wins / (len(p) * len(n))


def test_confusion_metrics_by_hand():
    y = ["1", "1", "0", "0", "1", "0"]
    yhat = ["1", "0", "0", "1", "1", "0"]
    tp, fp, fn, tn = perf.confusion(y, yhat, "1")
    assert (tp, fp, fn, tn) == (2, 1, 1, 2)
    assert perf.from_confusion("accuracy", tp, fp, fn, tn, 4) == 4 / 6
    assert perf.from_confusion("precision", tp, fp, fn, tn, 4) == 2 / 3
    assert perf.from_confusion("recall", tp, fp, fn, tn, 4) == 2 / 3
    assert perf.from_confusion("f1", tp, fp, fn, tn, 4) == pytest.approx(2 / 3)
    assert math.isnan(perf.from_confusion("precision", 0, 0, 3, 3, 3))
    assert perf.accuracy(y, yhat) == 4 / 6


def test_regression_metrics_by_hand():
    y, yhat = [1.0, 2.0, 4.0], [2.0, 2.0, 1.0]
    assert perf.mae(y, yhat) == pytest.approx((1 + 0 + 3) / 3)
    assert perf.rmse(y, yhat) == pytest.approx(math.sqrt((1 + 0 + 9) / 3))
    assert perf.from_error_sums("mae", 3, 4.0, 10.0) == pytest.approx(4 / 3)
    assert perf.from_error_sums("rmse", 3, 4.0, 10.0) == pytest.approx(math.sqrt(10 / 3))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 60), ties=st.booleans())
def test_roc_auc_matches_brute_force(seed, n, ties):
    rng = np.random.default_rng(seed)
    pos = rng.random(n) < 0.5
    score = rng.random(n)
    if ties:
        score = np.round(score, 1)
    expected = brute_auc(pos, score) if 0 < pos.sum() < n else math.nan
    got = perf.roc_auc(pos, score)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(200, 5000), strength=st.floats(0.2, 4))
def test_roc_auc_from_score_histograms_within_0005(seed, n, strength):
    rng = np.random.default_rng(seed)
    ref_score = 1 / (1 + np.exp(-rng.normal(0, strength, 5000)))
    bins = NumericalBins.from_reference(ref_score)
    x = rng.normal(0, strength, n)
    score = 1 / (1 + np.exp(-x))
    pos = rng.random(n) < score
    b = bins.bin(score)
    hp = np.bincount(b[pos], minlength=bins.nbins)
    hn = np.bincount(b[~pos], minlength=bins.nbins)
    assert abs(perf.roc_auc_from_histograms(hp, hn) - perf.roc_auc(pos, score)) <= 0.005
