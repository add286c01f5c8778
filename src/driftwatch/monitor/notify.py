"""Rule edges -> notification bodies (CONTRACT section 6, ``format: generic``)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from driftwatch.detectors.policy import Edge
from driftwatch.monitor.results import Evaluation

_NAMESPACE = uuid.UUID("6c1f3f0e-3a43-4b6a-9a43-4f1d3b0d7a11")
_FIRED_TYPE = {
    "feature_drift": "drift.detected",
    "prediction_drift": "drift.detected",
    "dataset_drift": "drift.detected",
    "performance": "performance.degraded",
    "data_quality": "data_quality.degraded",
    "version_regression": "rollback.recommended",
    "estimated_performance": "performance.degraded",
}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def notification_id(
    model: str, rule: str, kind: str, firing: int, lineage: str | None = None
) -> str:
    """Deterministic: the ``firing``-th firing of a model's rule (or its resolve) in one
    state lineage has one id, however often and wherever it is re-derived (a retry, a
    restart, a restore, another replica). A state that starts empty gets a new lineage,
    so its firings never reuse an id already delivered (``None``: the pre-lineage ids)."""
    base = f"{model}\x1f{rule}\x1f{kind}\x1f{firing}"
    return str(uuid.uuid5(_NAMESPACE, base if lineage is None else f"{lineage}\x1f{base}"))


def _clean(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else x


def _performance(evaluation: Evaluation, rule: str) -> dict[str, Any] | None:
    """The measured metric (``"estimated": false``), or for rule ``estimated_performance``
    the metric estimated from the scores (``"estimated": true``, CONTRACT section 10,
    with the scored events it covers); None for a model without the rule's metric."""
    if rule == "estimated_performance" or (
        evaluation.performance_metric is None and evaluation.estimated_metric is not None
    ):
        metric = evaluation.estimated_metric
        if metric is None:
            return None
        return {
            "metric": metric,
            "current": _clean(evaluation.performance_estimated.get(metric)),
            "reference": _clean(evaluation.estimated_reference),
            "estimated": True,
            "scored_events": evaluation.scored_events,
        }
    metric = evaluation.performance_metric
    if metric is None:
        return None
    return {
        "metric": metric,
        "current": _clean(evaluation.performance.get(metric)),
        "reference": _clean(evaluation.performance_reference.get(metric)),
        "estimated": False,
    }


def _data_quality(evaluation: Evaluation) -> dict[str, Any] | None:
    """Each (feature, ratio) breaching the data-quality rule, with its value and threshold;
    None for a model without the rule."""
    if not evaluation.quality_rule:
        return None
    return {"features": [b.to_dict() for b in evaluation.quality_breaches]}


def _versions(evaluation: Evaluation, rule: str) -> dict[str, Any] | None:
    """Rule ``version_regression``'s two versions and their figures (``previous`` null when
    only one version serves); None for the other rules."""
    if rule != "version_regression" or evaluation.version_metric is None:
        return None
    metric = evaluation.version_metric
    by_name = {v.version: v for v in evaluation.versions}

    def one(name: str | None) -> dict[str, Any] | None:
        v = None if name is None else by_name.get(name)
        if v is None:
            return None
        return {
            "version": v.version,
            "metric": metric,
            "value": _clean(v.performance.get(metric)),
            "labeled_events": v.labeled_events,
        }

    return {
        "newest": one(evaluation.version_newest),
        "previous": one(evaluation.version_previous),
    }


@dataclass(frozen=True)
class Notification:
    id: str
    model: str
    rule: str
    type: str
    body: dict[str, Any]


def notification(
    evaluation: Evaluation, rule: str, edge: Edge, firing: int, lineage: str | None = None
) -> Notification:
    kind = _FIRED_TYPE[rule] if edge is Edge.FIRED else "resolved"
    nid = notification_id(evaluation.model, rule, kind, firing, lineage)
    drifted = [
        {
            "feature": f.feature,
            "psi": _clean(f.psi),
            "ks_statistic": _clean(f.ks_statistic),
            "ks_pvalue": _clean(f.ks_pvalue),
            # which of the newest events breached (CONTRACT section 8): a feature found by
            # its newest events may show a small whole-window PSI
            "resolution": None
            if f.resolution is None
            else {"events": f.resolution, "test": f.resolution_test},
        }
        for f in evaluation.drifted_features
    ]
    body: dict[str, Any] = {
        "id": nid,
        "type": kind,
        "model": evaluation.model,
        "rule": rule,
        "occurred_at": iso(evaluation.evaluated_at),
        "window": {
            "events": evaluation.window_events,
            "labeled_events": evaluation.labeled_events,
        },
        "drifted_features": drifted,
        "performance": _performance(evaluation, rule),
        "data_quality": _data_quality(evaluation),
        "versions": _versions(evaluation, rule),
        "prediction_psi": _clean(evaluation.prediction_psi),
        "drifted_features_ratio": evaluation.drifted_ratio,
    }
    return Notification(nid, evaluation.model, rule, kind, body)
