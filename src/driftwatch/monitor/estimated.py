"""Performance estimated without labels: confidence-based estimation over the score bins.

A binary classifier's calibrated score says how likely each prediction is right, so the
window's *expected* confusion counts follow from its scores alone (NannyML's CBPE; here
from counts, kept per pane like every other window statistic).

**Counts reused.** When the reference has a ``score`` column, the model's ``prediction``
slot counts each event's score over the score's ~500 reference-quantile fine bins
(:class:`~driftwatch.windows.reference.NumericalBins`). Those per-pane counts ``c_b`` are
all the estimate reads: no new window state, no change to the layout fingerprint (old
checkpoints restore). Events without a score are not in the estimate (``scored_events``).

**Calibration** (built once with the monitor, from the reference): the isotonic
(pool-adjacent-violators) regression of ``label == positive`` on the score, restricted to
functions constant on each fine bin, i.e. PAV over the bins' positive rates weighted by
their reference rows. ``p_b`` is the calibrated P(positive) of a score in bin ``b``;
it is non-decreasing in ``b``. Bins the reference never reached (below its minimum,
above its maximum, an open interval between two adjacent distinct scores) take the mean
of their nearest non-empty neighbours (the neighbour itself at the ends), which keeps
``p`` monotone. :attr:`ConfidenceEstimator.calibration_error` is the expected
calibration error on the reference (10 equal-mass score groups), logged at build and
tested; :attr:`raw_calibration_error` is the same for the raw scores read as
probabilities, to show how far off the model's own scores are.

**Predicted class per bin.** The events' predicted class is not counted per score bin,
so it is read from the score: ``q_b`` is the share of the reference's rows in bin ``b``
predicted positive (the reference's ``prediction`` column when it has one, else
``score >= 0.5``). For a model that predicts ``score >= t`` every bin has ``q_b`` 0 or 1
except at most one: the open bin whose interval contains ``t``, where ``q_b`` is the
reference's split of that bin, applied to the window's count of it. The estimate is
therefore exact in the predicted classes except for that one bin, whose window count
(about 1/500 of the window when the scores do not shift there) bounds the error in the
predicted-positive count. Empty bins take ``q`` as ``p`` above (0.5 for a gap between a
negative and a positive bin). This assumes the live decision rule is the reference's.

**Estimate.** With ``c_b`` the window's count in bin ``b``:
``TP = sum c_b q_b p_b``, ``FP = sum c_b q_b (1 - p_b)``, ``FN = sum c_b (1 - q_b) p_b``,
``TN = sum c_b (1 - q_b)(1 - p_b)``; accuracy ``(TP + TN) / n``, precision, recall and
f1 from them; roc_auc from the expected positives ``c_b p_b`` and negatives
``c_b (1 - p_b)`` per ordered bin (pairs within one bin count half), as for the measured
roc_auc. This is CBPE's expectation with its calibrator replaced by the binned isotonic
one.

**Where it is wrong by design.** The estimate assumes P(label | score) is the
reference's: it tracks covariate shift (the scores move, the calibration holds), not
concept drift (the same scores now mean another label rate), nor a score that was never
calibrated on data like the window's. The measured ``performance`` rule, once labels
arrive, catches those.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftwatch.stats import performance as perf
from driftwatch.windows.reference import NumericalBins

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: The metrics estimated (the classification metrics of CONTRACT section 4).
ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
#: Equal-mass score groups of the expected calibration error.
ECE_GROUPS = 10


def pav(values: npt.ArrayLike, weights: npt.ArrayLike) -> FloatArray:
    """Isotonic (non-decreasing) least-squares fit of ``values`` with positive ``weights``:
    pool adjacent violators, one pass with a stack of blocks (O(n))."""
    y = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if y.shape != w.shape or y.ndim != 1:
        raise ValueError("values and weights must be 1-d arrays of one length")
    if np.any(w <= 0):
        raise ValueError("weights must be positive")
    means: list[float] = []
    masses: list[float] = []
    sizes: list[int] = []
    for v, m in zip(y.tolist(), w.tolist(), strict=True):
        means.append(v)
        masses.append(m)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, m1 = masses.pop(), masses[-1]
            v2, v1 = means.pop(), means[-1]
            s2 = sizes.pop()
            masses[-1] = m1 + m2
            means[-1] = (v1 * m1 + v2 * m2) / (m1 + m2)
            sizes[-1] += s2
    return np.repeat(np.array(means, dtype=np.float64), sizes)


def _fill(values: FloatArray, present: npt.NDArray[np.bool_]) -> FloatArray:
    """``values`` where ``present``; elsewhere the mean of the nearest present neighbours
    (the one neighbour at either end). Non-decreasing input stays non-decreasing."""
    idx = np.flatnonzero(present)
    out = values.astype(np.float64, copy=True)
    if idx.size == 0:
        return np.full(values.shape, math.nan)
    positions = np.arange(values.size)
    right = np.searchsorted(idx, positions, side="left")  # first present at or after
    left = right - 1
    right_val = values[idx[np.minimum(right, idx.size - 1)]]
    left_val = values[idx[np.maximum(left, 0)]]
    filled = np.where(
        right >= idx.size, left_val, np.where(left < 0, right_val, (left_val + right_val) / 2)
    )
    out[~present] = filled[~present]
    return out


def expected_calibration_error(
    probability: FloatArray, positives: FloatArray, rows: FloatArray, groups: int = ECE_GROUPS
) -> float:
    """ECE of per-bin probabilities against per-bin positives over ``rows`` (in bin order):
    ``sum_g |sum p - sum y| / n`` over ``groups`` consecutive groups of about equal mass."""
    n = float(rows.sum())
    if n == 0:
        return math.nan
    cum = np.cumsum(rows) - rows / 2
    group = np.minimum((cum / n * groups).astype(np.int64), groups - 1)
    expected = np.bincount(group, weights=rows * probability, minlength=groups)
    observed = np.bincount(group, weights=positives, minlength=groups)
    return float(np.abs(expected - observed).sum() / n)


@dataclass(frozen=True, eq=False)
class ConfidenceEstimator:
    """Per fine score bin: the calibrated P(positive) and the share predicted positive."""

    score_bins: NumericalBins
    probability: FloatArray
    predicted_positive: FloatArray
    #: expected calibration error on the reference, calibrated and raw scores
    calibration_error: float
    raw_calibration_error: float
    #: the estimate on the reference's own scores
    reference: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        score_bins: NumericalBins,
        scores: npt.ArrayLike,
        positive: npt.ArrayLike,
        predicted: npt.ArrayLike | None = None,
    ) -> ConfidenceEstimator:
        """From the reference's scores, ``positive`` (its label is the positive class) and
        ``predicted`` (predicted positive; None: ``score >= 0.5``). Rows with a non-finite
        score are skipped. Raises ValueError unless both classes occur."""
        s = np.asarray(scores, dtype=np.float64)
        y = np.asarray(positive, dtype=bool)
        yhat = s >= 0.5 if predicted is None else np.asarray(predicted, dtype=bool)
        ok = np.isfinite(s)
        s, y, yhat = s[ok], y[ok], yhat[ok]
        if not (y.any() and (~y).any()):
            raise ValueError("the reference's labels need both classes")
        k = score_bins.nbins
        b = score_bins.bin(s)
        rows = np.bincount(b, minlength=k).astype(np.float64)
        pos: FloatArray = np.bincount(b, weights=y.astype(np.float64), minlength=k).astype(
            np.float64
        )
        pred = np.bincount(b, weights=yhat.astype(np.float64), minlength=k)
        present = rows > 0
        rate = np.zeros(k)
        rate[present] = pos[present] / rows[present]
        fitted = np.zeros(k)
        fitted[present] = pav(rate[present], rows[present])
        probability = _fill(fitted, present)
        share = np.zeros(k)
        share[present] = pred[present] / rows[present]
        predicted_positive = _fill(share, present)
        # An empty bin wholly on one side of the reference's decision (below its largest
        # score predicted negative, or above its smallest predicted positive) is predicted
        # that way: a neighbours' mean there would split a bin whose class is known (a
        # coarse reference, e.g. scores rounded to 0.1, left whole gaps at 0.5).
        lower, upper = score_bins.bin_bounds
        if (~yhat).any():
            t_lo = float(s[~yhat].max())
            predicted_positive[~present & (upper <= t_lo)] = 0.0
        if yhat.any():
            t_hi = float(s[yhat].min())
            predicted_positive[~present & (lower >= t_hi)] = 1.0
        if predicted is None:  # the decision is score >= 0.5 exactly: no empty bin straddles
            equality = lower == upper
            predicted_positive[~present & (lower >= 0.5)] = 1.0
            predicted_positive[~present & ~equality & (upper <= 0.5)] = 0.0
        raw_point = np.zeros(k)
        raw_point[present] = np.bincount(b, weights=s, minlength=k)[present] / rows[present]
        est = cls(
            score_bins,
            probability,
            predicted_positive,
            expected_calibration_error(probability, pos, rows),
            expected_calibration_error(np.clip(raw_point, 0.0, 1.0), pos, rows),
        )
        est.reference.update(est.estimate(rows))
        return est

    def confusion(self, counts: npt.ArrayLike) -> tuple[float, float, float, float]:
        """Expected ``(tp, fp, fn, tn)`` of a window's score-bin counts."""
        c = np.asarray(counts, dtype=np.float64)
        p, q = self.probability, self.predicted_positive
        tp = float(np.dot(c, q * p))
        fp = float(np.dot(c, q * (1 - p)))
        fn = float(np.dot(c, (1 - q) * p))
        tn = float(np.dot(c, (1 - q) * (1 - p)))
        return tp, fp, fn, tn

    def estimate(self, counts: npt.ArrayLike) -> dict[str, float]:
        """Every estimated metric of a window's score-bin counts (NaN when undefined)."""
        c = np.asarray(counts, dtype=np.float64)
        tp, fp, fn, tn = self.confusion(c)
        out = {
            m: perf.from_confusion(m, tp, fp, fn, tn, tp + tn)
            for m in ("accuracy", "precision", "recall", "f1")
        }
        out["roc_auc"] = perf.roc_auc_from_histograms(
            c * self.probability, c * (1 - self.probability)
        )
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "calibration_error": self.calibration_error,
            "raw_calibration_error": self.raw_calibration_error,
            "reference": dict(self.reference),
        }


def build_estimator(
    score_bins: NumericalBins | None,
    columns: dict[str, Any],
    positive: str | None,
    keys: Any,
    model: str = "",
) -> ConfidenceEstimator | None:
    """The model's estimator when the reference has ``score`` and binary ``label`` columns
    (``keys``: the canonical class of a value), else None."""
    if score_bins is None or positive is None or "label" not in columns or "score" not in columns:
        return None
    labels = [keys(v) for v in columns["label"]]
    known = np.array([v is not None for v in labels])
    if len({v for v in labels if v is not None}) != 2:
        return None
    scores = np.asarray(columns["score"], dtype=np.float64)[known]
    y = np.array([v == positive for v in labels if v is not None])
    predicted = None
    if "prediction" in columns:
        preds = [keys(v) for v in columns["prediction"]]
        predicted = np.array([v == positive for v in preds])[known]
    try:
        est = ConfidenceEstimator.build(score_bins, scores, y, predicted)
    except ValueError:
        return None
    log.info(
        "model %s: score calibration on the reference: expected calibration error %.4f "
        "(raw scores %.4f)",
        model,
        est.calibration_error,
        est.raw_calibration_error,
    )
    return est
