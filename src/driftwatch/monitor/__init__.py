"""Per-model monitoring state: pure (no I/O, no clock; ``now`` is passed in)."""

from __future__ import annotations

from driftwatch.monitor.model import ModelMonitor, MonitorSpec, evaluate_snapshot
from driftwatch.monitor.results import Evaluation, FeatureResult

__all__ = ["Evaluation", "FeatureResult", "ModelMonitor", "MonitorSpec", "evaluate_snapshot"]
