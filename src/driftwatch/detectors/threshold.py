"""Threshold rules: does a statistic breach? With hysteresis, a statistic that breached
at the previous evaluation (``was``) keeps breaching until it is clearly back: below
``threshold x resolve_ratio`` for PSI, above ``threshold / resolve_ratio`` (capped below 1,
see :attr:`DriftRule.ks_resolve_limit`) for a KS p-value,
a drop below ``max_drop x resolve_ratio`` for performance, a data-quality ratio at most
``max x resolve_ratio``, the gap between two model versions below ``max_drop x
resolve_ratio``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from driftwatch.detectors.recent import RecentRule

CORRECTIONS = ("none", "bonferroni", "fdr")


def adjust_pvalues(pvalues: Sequence[float], correction: str) -> list[float]:
    """Multiple-testing adjusted p-values (NaNs stay NaN and are not counted as tests).

    ``bonferroni``: ``min(1, p * m)``. ``fdr``: Benjamini-Hochberg step-up,
    ``min(1, min_{j >= i} p_(j) * m / j)``.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    p = np.asarray(pvalues, dtype=np.float64)
    out = p.copy()
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if correction == "none" or m == 0:
        return [float(x) for x in out]
    q = p[ok]
    if correction == "bonferroni":
        out[ok] = np.minimum(1.0, q * m)
    else:
        order = np.argsort(q)
        scaled = q[order] * m / np.arange(1, m + 1)
        adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
        back = np.empty(m)
        back[order] = adjusted
        out[ok] = back
    return [float(x) for x in out]


@dataclass(frozen=True)
class DriftRule:
    """When a feature, the prediction distribution or the dataset counts as drifted.

    ``method="psi"``: a numerical feature breaches when ``psi >= threshold``.
    ``method="ks"``: when its KS p-value, adjusted for ``correction`` across the model's
    numerical features, is ``< threshold``. Categorical features always use PSI against
    ``categorical_threshold``; the prediction distribution uses PSI against
    ``prediction_threshold``; the dataset drifts when ``share`` of the features do.
    Nothing breaches on fewer than ``min_events`` events. A KS breach also needs the KS
    statistic (the largest CDF gap) at ``ks_min_statistic`` or more: on a large window
    a negligible shift has a tiny p-value. ``recent``: the newest events' own tests
    (:mod:`driftwatch.detectors.recent`), which make a feature drift as well.
    """

    method: str = "psi"
    threshold: float = 0.2
    min_events: int = 500
    categorical_threshold: float = 0.2
    prediction_threshold: float = 0.2
    share: float = 0.5
    resolve_ratio: float = 1.0
    correction: str = "none"
    ks_min_statistic: float = 0.1
    recent: RecentRule = field(default_factory=RecentRule)

    def __post_init__(self) -> None:
        if self.method not in ("psi", "ks"):
            raise ValueError(f"method must be 'psi' or 'ks', got {self.method!r}")
        if not self.threshold > 0:
            raise ValueError("threshold must be positive")
        if self.method == "ks" and not self.threshold < 1:
            raise ValueError("a ks threshold is a p-value in (0, 1)")
        if self.min_events < 1:
            raise ValueError("min_events must be >= 1")
        if not 0 < self.share <= 1:
            raise ValueError("share must be in (0, 1]")
        if not 0 < self.resolve_ratio <= 1:
            raise ValueError("resolve_ratio must be in (0, 1]")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}")
        if not 0 <= self.ks_min_statistic < 1:
            raise ValueError("ks_min_statistic must be in [0, 1)")

    def _psi(self, events: int, psi: float, threshold: float, was: bool) -> bool:
        if events < self.min_events or math.isnan(psi):
            return False
        return psi >= (threshold * self.resolve_ratio if was else threshold)

    def numerical(
        self,
        events: int,
        psi: float,
        ks_pvalue: float,
        was: bool = False,
        ks_statistic: float = math.inf,
    ) -> bool:
        """``ks_pvalue`` is the adjusted one under ``method="ks"``."""
        if self.method == "psi":
            return self._psi(events, psi, self.threshold, was)
        if events < self.min_events or math.isnan(ks_pvalue):
            return False
        floor = self.ks_min_statistic * (self.resolve_ratio if was else 1.0)
        if not ks_statistic >= floor:
            return False
        return ks_pvalue < (self.ks_resolve_limit if was else self.threshold)

    def recent_floors(self) -> tuple[float, float]:
        """The newest-events effect floors of numerical and categorical features when
        ``recent.min_psi`` is not set: half their PSI threshold (under ``ks``, numerical
        features take half the PSI default, 0.1). A persistent shift smaller than that
        never breaches through the newest events, whatever their number."""
        numerical = self.threshold / 2 if self.method == "psi" else 0.1
        return numerical, self.categorical_threshold / 2

    @property
    def ks_resolve_limit(self) -> float:
        """The p-value a firing KS feature must exceed to resolve: ``threshold / resolve_ratio``,
        capped at ``(1 + threshold) / 2`` so it stays below 1 and is always reachable (a
        p-value is at most 1; under no drift it exceeds the cap about half the time)."""
        return min(self.threshold / self.resolve_ratio, (1.0 + self.threshold) / 2.0)

    def categorical(self, events: int, psi: float, was: bool = False) -> bool:
        return self._psi(events, psi, self.categorical_threshold, was)

    def prediction(self, events: int, psi: float, was: bool = False) -> bool:
        return self._psi(events, psi, self.prediction_threshold, was)

    def dataset(self, events: int, ratio: float, was: bool = False) -> bool:
        return events >= self.min_events and ratio >= (
            self.share * self.resolve_ratio if was else self.share
        )


@dataclass(frozen=True)
class PerformanceRule:
    """Decay: the metric fell more than ``max_drop`` below its reference value (rose, for
    error metrics), measured on at least ``min_labels`` labelled predictions."""

    metric: str
    max_drop: float = 0.05
    min_labels: int = 200
    lower_is_better: bool = False
    resolve_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.max_drop < 0:
            raise ValueError("max_drop must be >= 0")
        if self.min_labels < 1:
            raise ValueError("min_labels must be >= 1")
        if not 0 < self.resolve_ratio <= 1:
            raise ValueError("resolve_ratio must be in (0, 1]")

    def breach(self, labeled: int, current: float, reference: float, was: bool = False) -> bool:
        if labeled < self.min_labels or math.isnan(current) or math.isnan(reference):
            return False
        drop = current - reference if self.lower_is_better else reference - current
        return drop > (self.max_drop * self.resolve_ratio if was else self.max_drop)


#: The data-quality ratios a :class:`QualityRule` may bound, as named in its thresholds.
QUALITY_RATIOS = ("missing_ratio", "out_of_range_ratio", "new_category_ratio")


@dataclass(frozen=True)
class QualityRule:
    """Data quality (rule ``data_quality``): a feature's ratio breaches when it exceeds its
    ``max_<ratio>`` (``None``: not checked), judged on at least ``min_events`` events (the
    ratio's denominator: window events for ``missing_ratio``, the feature's values for the
    others). A ratio that breached keeps breaching until it is at most
    ``max x resolve_ratio``."""

    max_missing_ratio: float | None = None
    max_out_of_range_ratio: float | None = None
    max_new_category_ratio: float | None = None
    min_events: int = 200
    resolve_ratio: float = 1.0

    def __post_init__(self) -> None:
        for name in QUALITY_RATIOS:
            limit = self.threshold(name)
            if limit is not None and not 0 <= limit <= 1:
                raise ValueError(f"max_{name} must be in [0, 1]")
        if self.min_events < 1:
            raise ValueError("min_events must be >= 1")
        if not 0 < self.resolve_ratio <= 1:
            raise ValueError("resolve_ratio must be in (0, 1]")

    def threshold(self, ratio: str) -> float | None:
        """The bound of ``ratio`` (one of :data:`QUALITY_RATIOS`), or None."""
        if ratio not in QUALITY_RATIOS:
            raise ValueError(f"unknown data-quality ratio {ratio!r}")
        limit: float | None = getattr(self, f"max_{ratio}")
        return limit

    def breach(self, ratio: str, value: float, support: int, was: bool = False) -> bool:
        """Does ``value`` of ``ratio``, over ``support`` events or values, breach?"""
        limit = self.threshold(ratio)
        if limit is None or support < self.min_events or math.isnan(value):
            return False
        return value > (limit * self.resolve_ratio if was else limit)


@dataclass(frozen=True)
class VersionRule(PerformanceRule):
    """Rule ``version_regression``: the newest model version's ``metric`` is worse than the
    previous version's by more than ``max_drop`` (higher is worse when
    ``lower_is_better``: mae, rmse), both measured on at least ``min_labels`` labelled
    predictions in the window. A pair that breached keeps breaching until the gap is at
    most ``max_drop x resolve_ratio``. The performance rule's check, with the previous
    version as the reference."""

    max_drop: float = 0.02

    def compare(
        self,
        newest_labeled: int,
        newest: float,
        previous_labeled: int,
        previous: float,
        was: bool = False,
    ) -> bool:
        return self.breach(min(newest_labeled, previous_labeled), newest, previous, was)
