"""Decisions: thresholds on statistics, and the alert policy over successive evaluations."""

from __future__ import annotations

from driftwatch.detectors.policy import AlertPolicy, Edge, RuleState
from driftwatch.detectors.threshold import DriftRule, PerformanceRule, QualityRule

__all__ = ["AlertPolicy", "DriftRule", "Edge", "PerformanceRule", "QualityRule", "RuleState"]
