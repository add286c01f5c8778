"""Performance metrics: exact on arrays, and from the counts a window keeps.

Counts form: a confusion ``(tp, fp, fn, tn)`` for the positive class plus the number
of correct predictions (multi-class accuracy); for roc_auc, histograms of the score
per true class over the same bins; for regression, the sums of absolute and squared
errors. Every function returns NaN where the metric is undefined.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION = ("mae", "rmse")
#: Metrics where a larger value is worse.
LOWER_IS_BETTER = frozenset(REGRESSION)


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def accuracy(y: npt.ArrayLike, yhat: npt.ArrayLike) -> float:
    y, yhat = np.asarray(y), np.asarray(yhat)
    return _div(float(np.sum(y == yhat)), float(y.size))


def confusion(y: npt.ArrayLike, yhat: npt.ArrayLike, positive: object) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)`` of ``positive`` against every other class."""
    yp = np.asarray(y) == positive
    hp = np.asarray(yhat) == positive
    return (
        int(np.sum(yp & hp)),
        int(np.sum(~yp & hp)),
        int(np.sum(yp & ~hp)),
        int(np.sum(~yp & ~hp)),
    )


def from_confusion(
    metric: str, tp: float, fp: float, fn: float, tn: float, correct: float
) -> float:
    """accuracy (from ``correct``), precision, recall or f1 from counts."""
    if metric == "accuracy":
        return _div(correct, tp + fp + fn + tn)
    if metric == "precision":
        return _div(tp, tp + fp)
    if metric == "recall":
        return _div(tp, tp + fn)
    if metric == "f1":
        return _div(2 * tp, 2 * tp + fp + fn)
    raise ValueError(f"not a confusion metric: {metric!r}")


def roc_auc(y_positive: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Exact ROC AUC (Mann-Whitney U with ties counted half)."""
    pos = np.asarray(y_positive, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc_from_histograms(positive: npt.ArrayLike, negative: npt.ArrayLike) -> float:
    """AUC from score histograms over the same ordered bins; pairs in one bin count half."""
    p = np.asarray(positive, dtype=np.float64)
    n = np.asarray(negative, dtype=np.float64)
    n_pos, n_neg = p.sum(), n.sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    below = np.cumsum(n) - n  # negatives in lower bins
    return float((np.sum(p * below) + 0.5 * np.sum(p * n)) / (n_pos * n_neg))


def mae(y: npt.ArrayLike, yhat: npt.ArrayLike) -> float:
    err = np.asarray(yhat, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return float(np.mean(np.abs(err))) if err.size else math.nan


def rmse(y: npt.ArrayLike, yhat: npt.ArrayLike) -> float:
    err = np.asarray(yhat, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return float(np.sqrt(np.mean(err**2))) if err.size else math.nan


def from_error_sums(metric: str, n: float, abs_sum: float, sq_sum: float) -> float:
    if metric == "mae":
        return _div(abs_sum, n)
    if metric == "rmse":
        return math.sqrt(sq_sum / n) if n else math.nan
    raise ValueError(f"not a regression metric: {metric!r}")
