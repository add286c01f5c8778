"""Threshold rules: does a statistic breach?"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DriftRule:
    """When a feature, or the prediction distribution, counts as drifted.

    ``method="psi"``: a numerical feature breaches when ``psi >= threshold``.
    ``method="ks"``: when the KS p-value ``< threshold``. Categorical features
    always use PSI against ``categorical_threshold``; the prediction distribution
    uses PSI against ``prediction_threshold``. Nothing breaches on fewer than
    ``min_events`` events.
    """

    method: str = "psi"
    threshold: float = 0.2
    min_events: int = 500
    categorical_threshold: float = 0.2
    prediction_threshold: float = 0.2

    def __post_init__(self) -> None:
        if self.method not in ("psi", "ks"):
            raise ValueError(f"method must be 'psi' or 'ks', got {self.method!r}")
        if not self.threshold > 0:
            raise ValueError("threshold must be positive")
        if self.method == "ks" and not self.threshold < 1:
            raise ValueError("a ks threshold is a p-value in (0, 1)")
        if self.min_events < 1:
            raise ValueError("min_events must be >= 1")

    def numerical(self, events: int, psi: float, ks_pvalue: float) -> bool:
        if events < self.min_events:
            return False
        if self.method == "psi":
            return _ge(psi, self.threshold)
        return not math.isnan(ks_pvalue) and ks_pvalue < self.threshold

    def categorical(self, events: int, psi: float) -> bool:
        return events >= self.min_events and _ge(psi, self.categorical_threshold)

    def prediction(self, events: int, psi: float) -> bool:
        return events >= self.min_events and _ge(psi, self.prediction_threshold)


def _ge(value: float, threshold: float) -> bool:
    return not math.isnan(value) and value >= threshold


@dataclass(frozen=True)
class PerformanceRule:
    """Decay: the metric fell more than ``max_drop`` below its reference value (rose, for
    error metrics), measured on at least ``min_labels`` labelled predictions."""

    metric: str
    max_drop: float = 0.05
    min_labels: int = 200
    lower_is_better: bool = False

    def __post_init__(self) -> None:
        if self.max_drop < 0:
            raise ValueError("max_drop must be >= 0")
        if self.min_labels < 1:
            raise ValueError("min_labels must be >= 1")

    def breach(self, labeled: int, current: float, reference: float) -> bool:
        if labeled < self.min_labels or math.isnan(current) or math.isnan(reference):
            return False
        drop = current - reference if self.lower_is_better else reference - current
        return drop > self.max_drop
