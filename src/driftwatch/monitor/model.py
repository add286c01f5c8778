"""ModelMonitor: one model's window over its reference bins, and its evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from driftwatch.detectors.threshold import DriftRule
from driftwatch.events.schema import Prediction
from driftwatch.monitor.results import Evaluation, FeatureResult
from driftwatch.stats.ks import ks_from_counts
from driftwatch.stats.psi import psi_from_counts
from driftwatch.windows.count import CountWindow
from driftwatch.windows.panes import WindowSnapshot
from driftwatch.windows.reference import CategoricalBins, NumericalBins, ReferenceProfile
from driftwatch.windows.time import TimeWindow


@dataclass(frozen=True)
class MonitorSpec:
    """A model as the monitor needs it (built by the app from the config)."""

    name: str
    task: str
    features: dict[str, str]
    rule: DriftRule
    window_events: int | None = None
    window_seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.window_events is None) == (self.window_seconds is None):
            raise ValueError("exactly one of window_events and window_seconds")


class ModelMonitor:
    """Ingests a model's validated predictions into its window; evaluates snapshots."""

    def __init__(self, spec: MonitorSpec, profile: ReferenceProfile) -> None:
        self.spec = spec
        self.profile = profile
        self.window: CountWindow | TimeWindow
        if spec.window_events is not None:
            self.window = CountWindow(spec.window_events, profile.nbins)
        else:
            assert spec.window_seconds is not None
            self.window = TimeWindow(spec.window_seconds, profile.nbins)
        self.events_total = 0
        self.late_events = 0
        self.missing = dict.fromkeys(spec.features, 0)

    def ingest(self, event: Prediction) -> ModelMonitor:
        return self.ingest_batch([event])

    def ingest_batch(self, events: Sequence[Prediction]) -> ModelMonitor:
        """Bin a batch of this model's predictions and add it to the window."""
        n = len(events)
        if n == 0:
            return self
        profile = self.profile
        bins = np.empty((n, len(profile.slots)), dtype=np.int64)
        for j, slot in enumerate(profile.slots):
            slot_bins = profile.slot_bins(slot)
            if slot == "prediction":
                values: list[object] = [
                    e.score if profile.prediction_source == "score" else e.prediction
                    for e in events
                ]
            else:
                values = [e.features.get(slot) for e in events]
                missing = values.count(None)
                if missing:
                    self.missing[slot] += missing
            if isinstance(slot_bins, NumericalBins):
                arr = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
                col = slot_bins.bin(arr)
            else:
                col = slot_bins.bin([None if v is None else str(v) for v in values])
            col[col >= 0] += profile.offsets[j]
            bins[:, j] = col
        timestamps = np.fromiter((e.timestamp for e in events), dtype=np.float64, count=n)
        self.late_events += self.window.add(bins, timestamps)
        self.events_total += n
        return self

    def snapshot(self) -> WindowSnapshot:
        return self.window.snapshot()

    def evaluate(self, now: float) -> Evaluation:
        return evaluate_snapshot(self.spec, self.profile, self.snapshot(), now)


def evaluate_snapshot(
    spec: MonitorSpec, profile: ReferenceProfile, snap: WindowSnapshot, now: float
) -> Evaluation:
    """Statistics and breaches of one window snapshot: O(bins), never O(events)."""
    rule = spec.rule
    n = snap.events
    results: list[FeatureResult] = []
    prediction_psi: float | None = None
    prediction_drift = False
    for j, slot in enumerate(profile.slots):
        counts = snap.counts[profile.slot_slice(j)]
        bins = profile.slot_bins(slot)
        if isinstance(bins, NumericalBins):
            psi = psi_from_counts(bins.reference_psi_counts, bins.psi_counts(counts))
            stat, pvalue = ks_from_counts(bins.reference_cdf, counts, bins.n_reference)
        else:
            assert isinstance(bins, CategoricalBins)
            psi = psi_from_counts(bins.reference_counts, counts)
            stat = pvalue = math.nan
        if slot == "prediction":
            prediction_psi = psi
            prediction_drift = rule.prediction(n, psi)
            continue
        if isinstance(bins, NumericalBins):
            drift = rule.numerical(n, psi, pvalue)
            results.append(FeatureResult(slot, "numerical", psi, stat, pvalue, drift))
        else:
            results.append(
                FeatureResult(slot, "categorical", psi, None, None, rule.categorical(n, psi))
            )
    return Evaluation(
        model=spec.name,
        evaluated_at=now,
        window_events=n,
        window_oldest=snap.oldest_timestamp,
        window_newest=snap.newest_timestamp,
        features=tuple(results),
        prediction_psi=prediction_psi,
        prediction_drift=prediction_drift,
        enough_events=n >= rule.min_events,
    )
