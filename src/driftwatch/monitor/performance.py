"""Where a model's labelled predictions are counted, and the metrics read from the counts.

Each region of a model's count vector (the model as a whole, or one segment value)
ends with a performance block. Classification: ``[labeled, correct, tp, fp, fn, tn]``
then, when the reference has scores, two histograms of the score over the score's
fine bins (positives, negatives). Regression: ``[labeled]`` plus two float sums per
region (absolute and squared errors). Nothing here is recomputed from raw events.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftwatch.events.schema import category_key
from driftwatch.stats import performance as perf
from driftwatch.windows.reference import NumericalBins

_CONF = 6  # labeled, correct, tp, fp, fn, tn


def positive_class(labels: list[str]) -> str:
    """``1`` or ``true`` when present, else the minority class (ties: the larger name)."""
    classes = Counter(labels)
    for candidate in ("1", "true"):
        if candidate in classes:
            return candidate
    if not classes:
        return "1"
    return min(classes, key=lambda c: (classes[c], [-ord(ch) for ch in c]))


@dataclass(frozen=True, eq=False)
class PerformanceLayout:
    task: str
    positive: str | None = None
    score_bins: NumericalBins | None = None

    @property
    def size(self) -> int:
        if self.task == "regression":
            return 1
        return _CONF + (2 * self.score_bins.nbins if self.score_bins is not None else 0)

    @property
    def nsums(self) -> int:
        return 2 if self.task == "regression" else 0

    @property
    def metrics(self) -> tuple[str, ...]:
        if self.task == "regression":
            return perf.REGRESSION
        names = ("accuracy", "precision", "recall", "f1")
        return (*names, "roc_auc") if self.score_bins is not None else names

    def cells(self, prediction: float | str, label: float | str, score: float | None) -> list[int]:
        """Positions (within the block) that one labelled prediction adds 1 to."""
        if self.task == "regression":
            return [0]
        correct = prediction == label
        pos_true, pos_pred = label == self.positive, prediction == self.positive
        quadrant = 2 + (0 if pos_true and pos_pred else 1 if pos_pred else 2 if pos_true else 3)
        out = [0, quadrant] + ([1] if correct else [])
        if self.score_bins is not None and score is not None and math.isfinite(score):
            b = int(self.score_bins.bin(np.array([score]))[0])
            out.append(_CONF + b + (0 if pos_true else self.score_bins.nbins))
        return out

    def sums(self, prediction: float | str, label: float | str) -> tuple[float, float]:
        err = float(prediction) - float(label)
        return abs(err), err * err

    def read(self, block: npt.NDArray[np.int64], sums: npt.NDArray[np.float64]) -> dict[str, float]:
        """Every metric of the task from one region's counts (NaN when undefined)."""
        if self.task == "regression":
            n = float(block[0])
            return {
                m: perf.from_error_sums(m, n, float(sums[0]), float(sums[1])) for m in self.metrics
            }
        _, correct, tp, fp, fn, tn = (float(x) for x in block[:_CONF])
        out = {
            m: perf.from_confusion(m, tp, fp, fn, tn, correct)
            for m in ("accuracy", "precision", "recall", "f1")
        }
        if self.score_bins is not None:
            k = self.score_bins.nbins
            out["roc_auc"] = perf.roc_auc_from_histograms(
                block[_CONF : _CONF + k], block[_CONF + k :]
            )
        return out

    def reference(self, columns: Mapping[str, Any]) -> dict[str, float]:
        """The metrics on the reference data's ``label`` / ``prediction`` / ``score`` columns."""
        if "label" not in columns or "prediction" not in columns:
            return {}
        if self.task == "regression":
            y = np.asarray(columns["label"], dtype=np.float64)
            yhat = np.asarray(columns["prediction"], dtype=np.float64)
            ok = np.isfinite(y) & np.isfinite(yhat)
            return {"mae": perf.mae(y[ok], yhat[ok]), "rmse": perf.rmse(y[ok], yhat[ok])}
        y = np.array([category_key(v) for v in columns["label"]])
        yhat = np.array([category_key(v) for v in columns["prediction"]])
        tp, fp, fn, tn = perf.confusion(y, yhat, self.positive)
        correct = float(np.sum(y == yhat))
        out = {
            m: perf.from_confusion(m, tp, fp, fn, tn, correct)
            for m in ("accuracy", "precision", "recall", "f1")
        }
        if self.score_bins is not None and "score" in columns:
            out["roc_auc"] = perf.roc_auc(
                y == self.positive, np.asarray(columns["score"], dtype=float)
            )
        return out
