"""Generated data for performance estimated without labels (CONTRACT section 10).

A binary classifier whose score is calibrated by construction: two numerical features,
``P(label = 1 | x) = sigmoid(a.x + b)``, the score is exactly that probability, the
prediction is ``score >= threshold``. Covariate shift only: the windows draw ``x`` from
other distributions (moved, squeezed, widened), ``P(label | x)`` stays the same, so the
score stays calibrated and the realized metrics move with the scores' distribution.
Shared by ``bench/cbpe.py`` and ``tests/unit/monitor/test_estimated.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

WEIGHTS = (1.6, -1.0)
BIAS = 0.3


@dataclass(frozen=True)
class Shift:
    """Feature means and scales of one window (the reference: means 0, scales 1)."""

    name: str
    mean: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)


#: The benchmark's windows: the reference's distribution, then covariate shifts that move
#: the scores towards, away from and across the decision boundary.
SHIFTS = (
    Shift("none"),
    Shift("x1 +0.5", (0.5, 0.0)),
    Shift("x1 -0.5", (-0.5, 0.0)),
    Shift("x1 +1.0", (1.0, 0.0)),
    Shift("x2 +1.0", (0.0, 1.0)),
    Shift("squeezed 0.5", scale=(0.5, 0.5)),
    Shift("squeezed 0.3", scale=(0.3, 0.3)),
    Shift("widened 1.5", scale=(1.5, 1.5)),
    Shift("x1 -1 squeezed", (-1.0, 0.0), (0.5, 0.5)),
    Shift("x2 -1.5 wide", (0.0, -1.5), (1.3, 1.3)),
)


@dataclass(frozen=True)
class Sample:
    x1: npt.NDArray[np.float64]
    x2: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]
    prediction: npt.NDArray[np.int64]
    label: npt.NDArray[np.int64]


def sample(
    rng: np.random.Generator, n: int, shift: Shift = SHIFTS[0], threshold: float = 0.5
) -> Sample:
    x1 = rng.normal(shift.mean[0], shift.scale[0], n)
    x2 = rng.normal(shift.mean[1], shift.scale[1], n)
    score = 1.0 / (1.0 + np.exp(-(WEIGHTS[0] * x1 + WEIGHTS[1] * x2 + BIAS)))
    label = (rng.random(n) < score).astype(np.int64)
    return Sample(x1, x2, score, (score >= threshold).astype(np.int64), label)


def realized(s: Sample) -> dict[str, float]:
    """The window's realized metrics (its labels known)."""
    from driftwatch.stats import performance as perf

    tp, fp, fn, tn = perf.confusion(s.label, s.prediction, 1)
    out = {
        m: perf.from_confusion(m, tp, fp, fn, tn, tp + tn)
        for m in ("accuracy", "precision", "recall", "f1")
    }
    out["roc_auc"] = perf.roc_auc(s.label == 1, s.score)
    return out


def allowed_error(metric: str, value: float, s: Sample) -> float:
    """Two binomial standard errors of a realized rate metric over its denominator
    (accuracy: the window; precision: predicted positives; recall: actual positives);
    0 for f1 and roc_auc. The realized metric itself is only that exact."""
    support = {
        "accuracy": s.score.size,
        "precision": int(s.prediction.sum()),
        "recall": int(s.label.sum()),
    }.get(metric)
    if not support:
        return 0.0
    return float(2.0 * np.sqrt(value * (1.0 - value) / support))
