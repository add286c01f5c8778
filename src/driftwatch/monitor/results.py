"""Evaluation results: frozen snapshots read by the exporter, /status and the notifier."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from driftwatch.monitor.quality import FeatureQuality, QualityBreach
from driftwatch.monitor.versions import VersionResult

RULES = (
    "feature_drift",
    "prediction_drift",
    "dataset_drift",
    "performance",
    "data_quality",
    "version_regression",
    "estimated_performance",
)


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 6)


@dataclass(frozen=True)
class FeatureResult:
    feature: str
    kind: str  # numerical | categorical
    psi: float
    ks_statistic: float | None
    ks_pvalue: float | None
    drift: bool
    #: the KS p-value after the multiple-testing correction the drift decision used
    ks_pvalue_adjusted: float | None = None
    #: How many of the newest events breached (the whole window's, when it did); None
    #: while the feature does not drift.
    resolution: int | None = None
    #: Which test of the newest events breached (``cells``, ``location``, ``spread``), or
    #: ``window`` for the whole window's PSI / KS rule.
    resolution_test: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "psi": _num(self.psi),
            "ks_statistic": _num(self.ks_statistic),
            "ks_pvalue": _p(self.ks_pvalue),
            "ks_pvalue_adjusted": _p(self.ks_pvalue_adjusted),
            "drift": self.drift,
            "resolution": None
            if self.resolution is None
            else {"events": self.resolution, "test": self.resolution_test},
        }


def _p(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else x


def _metrics(values: dict[str, float]) -> dict[str, float | None]:
    return {k: _num(v) for k, v in values.items()}


@dataclass(frozen=True)
class SegmentResult:
    """One segment value's window: its feature PSIs and performance."""

    segment: str
    value: str
    events: int
    labeled_events: int
    feature_psi: dict[str, float]
    performance: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "value": self.value,
            "events": self.events,
            "labeled_events": self.labeled_events,
            "feature_psi": _metrics(self.feature_psi),
            "performance": _metrics(self.performance),
        }


@dataclass(frozen=True)
class Hysteresis:
    """What the next evaluation needs of this one: which statistics were breaching."""

    drifting: frozenset[str] = frozenset()
    prediction: bool = False
    dataset: bool = False
    performance: bool = False
    #: (feature, ratio) pairs breaching the data-quality rule
    quality: frozenset[tuple[str, str]] = frozenset()
    #: the (newest, previous) model versions breaching rule version_regression
    versions: tuple[str, str] | None = None
    #: rule estimated_performance breaching
    estimated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifting": sorted(self.drifting),
            "prediction": self.prediction,
            "dataset": self.dataset,
            "performance": self.performance,
            "quality": [list(pair) for pair in sorted(self.quality)],
            "versions": None if self.versions is None else list(self.versions),
            "estimated": self.estimated,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hysteresis:
        """Also reads a checkpoint from before the data-quality rule (no ``quality``), the
        version rule (no ``versions``) or the estimated-performance rule (no ``estimated``)."""
        pair = d.get("versions")
        return cls(
            frozenset(d["drifting"]),
            d["prediction"],
            d["dataset"],
            d["performance"],
            frozenset((str(f), str(r)) for f, r in d.get("quality", ())),
            None if pair is None else (str(pair[0]), str(pair[1])),
            bool(d.get("estimated", False)),
        )


@dataclass(frozen=True)
class Evaluation:
    """One model's statistics and rule breaches at ``evaluated_at``."""

    model: str
    evaluated_at: float
    window_events: int
    window_oldest: float | None
    window_newest: float | None
    features: tuple[FeatureResult, ...]
    prediction_psi: float | None
    prediction_drift: bool
    enough_events: bool
    dataset_drift: bool = False
    labeled_events: int = 0
    performance: dict[str, float] = field(default_factory=dict)
    performance_reference: dict[str, float] = field(default_factory=dict)
    performance_metric: str | None = None
    performance_breach: bool = False
    segments: tuple[SegmentResult, ...] = ()
    labels_pending: int = 0
    #: every feature's data quality and summaries (``monitor.quality``), in feature order
    quality: Mapping[str, FeatureQuality] = field(default_factory=dict)
    #: whether the model has a ``data_quality`` rule, and what breaches it
    quality_rule: bool = False
    quality_breaches: tuple[QualityBreach, ...] = ()
    #: per model version in the window, first-seen order (``__other__`` last)
    versions: tuple[VersionResult, ...] = ()
    #: rule ``version_regression``: its metric (None: the model has no such rule), the
    #: newest and previous versions it compared (None: none), and whether it breaches
    version_metric: str | None = None
    version_newest: str | None = None
    version_previous: str | None = None
    version_regression: bool = False
    #: performance estimated from the scores alone (``monitor.estimated``; empty without
    #: an estimator) over ``scored_events`` (the window's events with a score)
    scored_events: int = 0
    performance_estimated: dict[str, float] = field(default_factory=dict)
    #: rule ``estimated_performance``: its metric (None: the model has no such rule), the
    #: reference value it compares with, and whether it breaches
    estimated_metric: str | None = None
    estimated_reference: float = math.nan
    estimated_breach: bool = False

    @property
    def hysteresis(self) -> Hysteresis:
        return Hysteresis(
            frozenset(f.feature for f in self.features if f.drift),
            self.prediction_drift,
            self.dataset_drift,
            self.performance_breach,
            frozenset(b.key for b in self.quality_breaches),
            (self.version_newest, self.version_previous)
            if self.version_regression
            and self.version_newest is not None
            and self.version_previous is not None
            else None,
            self.estimated_breach,
        )

    @property
    def label_coverage(self) -> float:
        return self.labeled_events / self.window_events if self.window_events else 0.0

    @property
    def drifted_features(self) -> tuple[FeatureResult, ...]:
        return tuple(f for f in self.features if f.drift)

    @property
    def drifted_ratio(self) -> float:
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    @property
    def breaches(self) -> dict[str, bool]:
        return {
            "feature_drift": bool(self.drifted_features),
            "prediction_drift": self.prediction_drift,
            "dataset_drift": self.dataset_drift,
            "performance": self.performance_breach,
            "data_quality": bool(self.quality_breaches),
            "version_regression": self.version_regression,
            "estimated_performance": self.estimated_breach,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "evaluated_at": self.evaluated_at,
            "window": {
                "events": self.window_events,
                "labeled_events": self.labeled_events,
                "oldest_timestamp": self.window_oldest,
                "newest_timestamp": self.window_newest,
            },
            "enough_events": self.enough_events,
            "features": [f.to_dict() for f in self.features],
            "prediction_psi": _num(self.prediction_psi),
            "prediction_drift": self.prediction_drift,
            "drifted_features_ratio": round(self.drifted_ratio, 6),
            "breaches": self.breaches,
            "labeled_events": self.labeled_events,
            "label_coverage": round(self.label_coverage, 6),
            "labels_pending": self.labels_pending,
            "performance": {
                "metric": self.performance_metric,
                "current": _metrics(self.performance),
                "reference": _metrics(self.performance_reference),
                # estimated from the scores alone (CONTRACT section 10)
                "estimated": _metrics(self.performance_estimated),
                "scored_events": self.scored_events,
                "estimated_rule": None
                if self.estimated_metric is None
                else {
                    "metric": self.estimated_metric,
                    "reference": _num(self.estimated_reference),
                },
            },
            "segments": [s.to_dict() for s in self.segments],
            "quality": {f: q.to_dict() for f, q in self.quality.items()},
            "quality_breaches": [b.to_dict() for b in self.quality_breaches],
            "versions": [v.to_dict() for v in self.versions],
            "version_regression": None
            if self.version_metric is None
            else {
                "metric": self.version_metric,
                "newest": self.version_newest,
                "previous": self.version_previous,
            },
        }
