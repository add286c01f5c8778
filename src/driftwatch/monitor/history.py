"""What the web page (``GET /``) reads besides ``/status``: each model's recent evaluations,
and its reference vs current decile distributions (see ``docs/page-api.md``).

* :class:`History` keeps, per model, the last ``length`` evaluations (240 by default) in a
  bounded ring, in memory only: it is not checkpointed, so it starts empty on every start
  of the process (and a model's ring is dropped when the model leaves the config or this
  replica stops owning it). The evaluation thread records compact points (a few
  microseconds a round); HTTP threads copy the rings under the same lock and serialise
  outside it. A reader asks for the newest ``limit`` points, and/or only those evaluated
  after ``since`` (the page, after its first load, fetches only the new points).
* :func:`distributions` reads each owned model's window counts at request time (one copy
  of the model's bin totals under the pipeline's window lock, nothing else) and folds
  them into the PSI bins of CONTRACT section 4: the reference deciles of a numerical
  feature, the reference categories plus one bin for unseen ones of a categorical one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from driftwatch.monitor.quality import finite_or_none
from driftwatch.windows.reference import CategoricalBins, NumericalBins

if TYPE_CHECKING:
    from driftwatch.monitor.results import Evaluation
    from driftwatch.pipeline import Pipeline

#: Evaluations kept per model (at the default 15 s interval: the last hour).
HISTORY_LENGTH = 240


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """What ``GET /api/history`` asks for: per model, the newest ``limit`` points (None:
    all kept) among those evaluated after ``since`` (None: all)."""

    limit: int | None = None
    since: float | None = None


@dataclass(frozen=True, slots=True)
class Kept:
    """A copy of some of a model's points, and what its ring held when they were copied."""

    points: list[Point]
    #: how many points the ring held
    kept: int
    #: when its oldest point was evaluated (None: the ring is empty)
    oldest: float | None


_NAN = math.nan


@dataclass(frozen=True, slots=True)
class Point:
    """One evaluation of one model, as the history keeps it (immutable)."""

    evaluated_at: float
    window_events: int
    labeled_events: int
    scored_events: int
    enough_events: bool
    features: tuple[str, ...]
    psi: tuple[float, ...]
    drift: tuple[bool, ...]
    prediction_psi: float | None
    drifted_features_ratio: float
    dataset_drift: bool
    #: the rules breaching at this evaluation (before the alert policy's consecutive /
    #: cooldown settings)
    breaches: tuple[str, ...]
    metric: str | None
    performance: float
    performance_reference: float
    estimated_metric: str | None
    estimated: float
    estimated_reference: float

    @classmethod
    def of(cls, ev: Evaluation) -> Point:
        feats = ev.features
        metric = ev.performance_metric
        est_metric = ev.estimated_metric or metric
        estimated = ev.performance_estimated
        return cls(
            ev.evaluated_at,
            ev.window_events,
            ev.labeled_events,
            ev.scored_events,
            ev.enough_events,
            tuple([f.feature for f in feats]),
            tuple([f.psi for f in feats]),
            tuple([f.drift for f in feats]),
            ev.prediction_psi,
            ev.drifted_ratio,
            ev.dataset_drift,
            tuple([rule for rule, hit in ev.breaches.items() if hit]),
            metric,
            ev.performance.get(metric, _NAN) if metric else _NAN,
            ev.performance_reference.get(metric, _NAN) if metric else _NAN,
            est_metric if estimated else None,
            estimated.get(est_metric, _NAN) if estimated and est_metric else _NAN,
            ev.estimated_reference,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluated_at": self.evaluated_at,
            "window_events": self.window_events,
            "labeled_events": self.labeled_events,
            "scored_events": self.scored_events,
            "enough_events": self.enough_events,
            "features": {
                f: {"psi": finite_or_none(p), "drift": d}
                for f, p, d in zip(self.features, self.psi, self.drift, strict=True)
            },
            "prediction_psi": finite_or_none(self.prediction_psi),
            "drifted_features_ratio": self.drifted_features_ratio,
            "dataset_drift": self.dataset_drift,
            "breaches": list(self.breaches),
            "performance": {
                "metric": self.metric,
                "current": finite_or_none(self.performance),
                "reference": finite_or_none(self.performance_reference),
            },
            "estimated": None
            if self.estimated_metric is None
            else {
                "metric": self.estimated_metric,
                "value": finite_or_none(self.estimated),
                "reference": finite_or_none(self.estimated_reference),
            },
        }


class History:
    """Per model, a ring of its last ``length`` evaluations (thread-safe)."""

    def __init__(self, length: int = HISTORY_LENGTH) -> None:
        if length < 1:
            raise ValueError("length must be >= 1")
        self.length = length
        self._rings: dict[str, deque[Point]] = {}
        self._lock = threading.Lock()

    def record(self, evaluations: Sequence[Evaluation]) -> None:
        """Add one round's evaluations (the points are built outside the lock)."""
        if not evaluations:
            return
        points = [(ev.model, Point.of(ev)) for ev in evaluations]
        with self._lock:
            for model, point in points:
                ring = self._rings.get(model)
                if ring is None:
                    ring = self._rings[model] = deque(maxlen=self.length)
                ring.append(point)

    def retain(self, models: Collection[str]) -> None:
        """Forget the models not in ``models`` (removed from the config, or no longer owned
        by this replica)."""
        keep = set(models)
        with self._lock:
            for name in [m for m in self._rings if m not in keep]:
                del self._rings[name]

    def points(
        self, model: str, limit: int | None = None, since: float | None = None
    ) -> list[Point]:
        """A copy of the model's newest ``limit`` points (all by default) evaluated after
        ``since`` (all by default), oldest first."""
        with self._lock:
            return _tail(self._rings.get(model), limit, since)

    def snapshot(
        self, models: Collection[str], limit: int | None = None, since: float | None = None
    ) -> dict[str, Kept]:
        """:meth:`points` of each of ``models`` (those with no ring: none), all copied at
        once: a round recorded meanwhile is in all of them or in none."""
        with self._lock:
            rings = [(m, self._rings.get(m)) for m in models]
            return {
                m: Kept(
                    _tail(ring, limit, since),
                    0 if ring is None else len(ring),
                    ring[0].evaluated_at if ring else None,
                )
                for m, ring in rings
            }

    def models(self) -> list[str]:
        with self._lock:
            return list(self._rings)


def _tail(ring: deque[Point] | None, limit: int | None, since: float | None) -> list[Point]:
    """The newest ``limit`` points of ``ring`` evaluated after ``since``, oldest first."""
    if not ring:
        return []
    take = len(ring) if limit is None else min(max(limit, 0), len(ring))
    if since is None:
        return list(ring)[len(ring) - take :] if take else []
    out: list[Point] = []
    for point in reversed(ring):  # newest first: stop at the first one already seen
        if len(out) >= take or point.evaluated_at <= since:
            break
        out.append(point)
    out.reverse()
    return out


def owned_models(pipeline: Pipeline) -> list[str]:
    """The configured models this replica evaluates (all of them without partitions)."""
    owned = pipeline.owned
    return [m for m in pipeline.monitors if owned is None or m in owned]


def history_document(
    history: History,
    pipeline: Pipeline,
    limit: int | None = None,
    since: float | None = None,
) -> dict[str, Any]:
    """``GET /api/history``: per owned model, the rules it has, its drift rule's thresholds,
    how many evaluations its ring keeps (``kept``) and since when (``oldest_evaluated_at``),
    and its newest ``limit`` evaluations (all kept, by default) evaluated after ``since``
    (all, by default), oldest first."""
    monitors = pipeline.monitors
    names = [name for name in owned_models(pipeline) if name in monitors]
    kept = history.snapshot(names, limit, since)
    models: dict[str, Any] = {}
    for name in names:
        monitor = monitors[name]
        spec = monitor.spec
        rule = spec.rule
        configured = {
            "feature_drift": True,
            "prediction_drift": monitor.profile.prediction is not None,
            "dataset_drift": True,
            "performance": spec.performance is not None,
            "estimated_performance": spec.estimated is not None,
            "data_quality": spec.quality is not None,
            "version_regression": spec.versions is not None,
        }
        models[name] = {
            "rules": [r for r, on in configured.items() if on],
            "drift_rule": {
                "method": rule.method,
                "threshold": rule.threshold,
                "categorical_threshold": rule.categorical_threshold,
                "prediction_threshold": rule.prediction_threshold,
                "share": rule.share,
                "min_events": rule.min_events,
            },
            "kept": kept[name].kept,
            "oldest_evaluated_at": kept[name].oldest,
            "evaluations": [p.to_dict() for p in kept[name].points],
        }
    return {"length": history.length, "models": models, "generated_at": time.time()}


def _fmt(x: float) -> str:
    """A bin edge for a label: four significant digits, no exponent between 1e-3 and 1e7."""
    a = abs(x)
    if not math.isfinite(x) or a == 0 or not 1e-3 <= a < 1e7:
        return f"{x:.4g}"
    text = f"{x:.{max(0, 3 - math.floor(math.log10(a)))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _slot(bins: NumericalBins | CategoricalBins, fine: np.ndarray) -> dict[str, Any]:
    """One slot's PSI bins: labels, reference and current proportions (unclipped)."""
    if isinstance(bins, NumericalBins):
        current = bins.psi_counts(fine)
        reference = bins.reference_psi_counts.astype(np.float64)
        edges = [float(e) for e in bins.psi_edges]
        if edges:
            labels = [
                f"< {_fmt(edges[0])}",
                *(f"[{_fmt(a)}, {_fmt(b)})" for a, b in pairwise(edges)),
                f"≥ {_fmt(edges[-1])}",
            ]
        else:
            labels = ["all"]
        out: dict[str, Any] = {"kind": "numerical", "edges": edges, "labels": labels}
    else:
        current = np.asarray(fine, dtype=np.float64)
        reference = bins.reference_counts.astype(np.float64)
        out = {
            "kind": "categorical",
            "categories": list(bins.categories),
            "labels": [*bins.categories, "(unseen)"],
        }
    ref_n, cur_n = float(reference.sum()), float(current.sum())
    out["reference"] = (reference / ref_n).tolist() if ref_n else None
    out["current"] = (current / cur_n).tolist() if cur_n else None
    out["reference_values"] = int(ref_n)
    out["current_values"] = int(cur_n)
    return out


def distributions(pipeline: Pipeline) -> dict[str, Any]:
    """``GET /api/distributions``: per owned model, each feature's (and the prediction's)
    reference vs current proportions in its PSI bins, from the window as it is now."""
    models: dict[str, Any] = {}
    lock: Any = pipeline._lock  # the window lock: held for one copy of the bin totals
    for name in owned_models(pipeline):
        monitor = pipeline.monitors.get(name)
        if monitor is None:
            continue
        profile = monitor.profile
        with lock:
            counts = monitor.window.totals[: profile.nbins].copy()
            events = int(monitor.window.events)
        features = {
            f: _slot(bins, counts[profile.slot_slice(j)])
            for j, (f, bins) in enumerate(profile.features.items())
        }
        prediction = None
        if profile.prediction is not None:  # the last slot
            j = len(profile.slots) - 1
            prediction = _slot(profile.prediction, counts[profile.slot_slice(j)])
        models[name] = {
            "window_events": events,
            "features": features,
            "prediction": prediction,
            "prediction_source": profile.prediction_source,
        }
    return {"models": models, "generated_at": time.time()}
