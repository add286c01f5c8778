"""ModelMonitor: one model's window over its reference bins, its label join, its evaluation.

The model's count vector is a sequence of *regions*: region 0 is the whole model,
then one per segment value (see ``monitor.segments``). Each region holds every slot's
bins (features, then the prediction), one bin counting the region's events, and the
performance block (``monitor.performance``). An event adds one row per region it belongs to; a label
adds its performance cells to the regions and pane of its prediction. Data quality
(``monitor.quality``) is read from the same counts. Per model version, a second window
in lockstep with this one (``monitor.versions``) holds each version's events, prediction
bins and performance block.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftwatch.detectors.recent import RecentTests
from driftwatch.detectors.threshold import (
    DriftRule,
    PerformanceRule,
    QualityRule,
    VersionRule,
    adjust_pvalues,
)
from driftwatch.events.columns import PredictionColumns
from driftwatch.events.schema import Label, Prediction
from driftwatch.monitor.estimated import ConfidenceEstimator
from driftwatch.monitor.front import ModelFront
from driftwatch.monitor.join import Awaiting, Joined, LabelJoin
from driftwatch.monitor.performance import PerformanceLayout
from driftwatch.monitor.quality import (
    FeatureQuality,
    QualityBreach,
    quality_breaches,
    window_quality,
)
from driftwatch.monitor.results import Evaluation, FeatureResult, Hysteresis, SegmentResult
from driftwatch.monitor.segments import Segment
from driftwatch.monitor.versions import VersionResult, VersionSnapshot, VersionWindow
from driftwatch.stats.ks import ks_pvalues, ks_statistic
from driftwatch.stats.psi import psi_from_counts
from driftwatch.windows.count import CountWindow
from driftwatch.windows.panes import WindowSnapshot
from driftwatch.windows.reference import (
    CategoricalBins,
    NumericalBinner,
    NumericalBins,
    ReferenceProfile,
)
from driftwatch.windows.time import TimeWindow

#: Upper bounds (seconds) of the label-delay histogram buckets.
DELAY_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0, 259_200.0, 604_800.0)


@dataclass(frozen=True)
class MonitorSpec:
    """A model as the monitor needs it (built by the app from the config)."""

    name: str
    task: str
    features: dict[str, str]
    rule: DriftRule
    window_events: int | None = None
    window_seconds: float | None = None
    performance: PerformanceRule | None = None
    segments: tuple[str, ...] = ()
    max_segment_values: int = 20
    label_ttl_seconds: float = 86_400.0
    max_pending: int = 1_000_000
    #: rule ``data_quality``; None: none (the figures are computed all the same)
    quality: QualityRule | None = None
    #: model versions tracked apart (the rest pooled as ``__other__``)
    max_versions: int = 5
    #: rule ``version_regression``; None: none (the figures are computed all the same)
    versions: VersionRule | None = None
    #: rule ``estimated_performance`` (``min_labels``: minimum scored events); None: none
    #: (the estimates are computed all the same when the monitor has an estimator)
    estimated: PerformanceRule | None = None
    #: ``kafka.format: cloudevents``: request/response halves' wait (``monitor.front``)
    pair_ttl_seconds: float = 600.0
    pair_max_pending: int = 20_000

    def __post_init__(self) -> None:
        if (self.window_events is None) == (self.window_seconds is None):
            raise ValueError("exactly one of window_events and window_seconds")

    @property
    def joins_labels(self) -> bool:
        """Labels are joined for the performance rule or the version rule."""
        return self.performance is not None or self.versions is not None


@dataclass(frozen=True, eq=False)
class ModelSnapshot(WindowSnapshot):
    """A model's window snapshot plus its version window's, taken under the same lock."""

    versions: VersionSnapshot | None = None


@dataclass
class LabelStats:
    """Label counters a monitor keeps (exported as Prometheus metrics)."""

    joined: int = 0
    delay_buckets: list[int] = field(default_factory=lambda: [0] * (len(DELAY_BUCKETS) + 1))
    delay_sum: float = 0.0

    def observe(self, delay: float) -> None:
        self.joined += 1
        self.delay_sum += delay
        for i, bound in enumerate(DELAY_BUCKETS):
            if delay <= bound:
                self.delay_buckets[i] += 1
                return
        self.delay_buckets[-1] += 1


class ModelMonitor:
    """Ingests a model's validated events into its window; evaluates snapshots."""

    def __init__(
        self,
        spec: MonitorSpec,
        profile: ReferenceProfile,
        layout: PerformanceLayout | None = None,
        segments: Sequence[Segment] = (),
        reference_performance: Mapping[str, float] | None = None,
        estimator: ConfidenceEstimator | None = None,
    ) -> None:
        self.spec = spec
        #: performance estimated from the scores (``monitor.estimated``); None: no estimate
        self.estimator = estimator
        self.profile = profile
        self.layout = layout or PerformanceLayout(spec.task)
        self.segments = tuple(segments)
        self.reference_performance = dict(reference_performance or {})
        self.count_offset = profile.nbins  # the bin counting a region's events
        self.perf_offset = profile.nbins + 1
        self.region_size = profile.nbins + 1 + self.layout.size
        self.regions = 1 + sum(len(s.values) for s in self.segments)
        nbins, nsums = self.region_size * self.regions, self.layout.nsums * self.regions
        self.window: CountWindow | TimeWindow
        if spec.window_events is not None:
            self.window = CountWindow(spec.window_events, nbins, nsums)
        else:
            assert spec.window_seconds is not None
            self.window = TimeWindow(spec.window_seconds, nbins, nsums)
        self.versions = VersionWindow(
            spec.max_versions,
            spec.window_events,
            spec.window_seconds,
            profile.prediction,
            self.layout,
        )
        self._prediction_slot = (
            profile.slots.index("prediction") if "prediction" in profile.slots else None
        )
        self.join = LabelJoin(spec.label_ttl_seconds, spec.max_pending)
        #: input copies applied and request/response halves waiting (``monitor.front``)
        self.front = ModelFront(spec.pair_ttl_seconds, spec.pair_max_pending)
        self.recent_tests = RecentTests(profile, spec.rule.recent, spec.rule.recent_floors())
        self.label_stats = LabelStats()
        self.events_total = 0
        self.labels_total = 0
        self.late_events = 0
        self.missing = dict.fromkeys(spec.features, 0)
        self._numerical = tuple(f for f, k in spec.features.items() if k == "numerical")
        self._categorical = tuple(f for f, k in spec.features.items() if k != "numerical")
        self._segment_columns = tuple(s.column for s in self.segments)
        self._numerical_index = {f: k for k, f in enumerate(self._numerical)}
        self._categorical_index = {f: k for k, f in enumerate(self._categorical)}
        self._segment_index = {c: k for k, c in enumerate(self._segment_columns)}
        # every numerical feature binned in one call: its slot rows, and their bins
        self._numerical_slots = [profile.slots.index(f) for f in self._numerical]
        self._binner = NumericalBinner(
            [profile.features[f] for f in self._numerical]  # type: ignore[misc]
        )
        self.fingerprint = layout_fingerprint(self)

    # -- predictions ------------------------------------------------------------------------
    def ingest(self, event: Prediction) -> ModelMonitor:
        return self.ingest_batch([event])

    def ingest_batch(self, events: Sequence[Prediction]) -> ModelMonitor:
        """Ingest decoded :class:`Prediction` objects (the per-event form)."""
        return self.ingest_columns(self.columns_of(events))

    def columns_of(self, events: Sequence[Prediction]) -> PredictionColumns:
        return PredictionColumns.from_events(
            self.spec.name, self._numerical, self._categorical, self._segment_columns, events
        )

    def ingest_columns(self, cols: PredictionColumns) -> ModelMonitor:
        """Bin a batch of this model's predictions, add it to the window, join waiting labels.

        Everything that can fail on odd input (binning, segment lookup, timestamps) is
        computed before any state changes, so a batch that raises leaves no trace."""
        n = len(cols)
        if n == 0:
            return self
        binned, missing = self._bin(cols)
        base = np.concatenate([binned, np.full((n, 1), self.count_offset)], axis=1)
        blocks = [base]
        region_of = np.zeros((n, len(self.segments)), dtype=np.int64)
        for k, seg in enumerate(self.segments):
            values = cols.segments[self._segment_index[seg.column]]
            local = np.fromiter((seg.local(v) for v in values), np.int64, n)
            region_of[:, k] = seg.first_region + local
            shifted = base + (region_of[:, k] * self.region_size)[:, None]
            blocks.append(np.where(base >= 0, shifted, -1))
        bins = np.concatenate(blocks, axis=1) if len(blocks) > 1 else base
        timestamps = cols.timestamps
        prediction_bins = None
        if self._prediction_slot is not None:
            j = self._prediction_slot
            column = binned[:, j]
            prediction_bins = np.where(column >= 0, column - self.profile.offsets[j], -1)
        versions = cols.version_list() if cols.versions else None
        waiting: list[tuple[str, Awaiting]] = []
        if self.spec.joins_labels:
            regions = [(0, *r) for r in region_of.tolist()]
            scores = cols.score_list()
            stamps = timestamps.tolist()
            waiting = [
                (ident, Awaiting(-1, cols.predictions[i], scores[i], stamps[i], regions[i]))
                for i, ident in enumerate(cols.ids)
            ]
        # -- state changes from here on
        keys = self.window.add(bins, timestamps)
        slots = [-1] * n if versions is None else self.versions.slots_for(versions)
        if self.versions.demoted:  # versions pooled into __other__: so are their labels
            moved, pooled = set(self.versions.demoted), self.versions.max_versions
            self.versions.demoted.clear()
            for pending in self.join.predictions.values():
                if pending.version in moved:
                    pending.version = pooled
        version_keys = self.versions.add(slots, prediction_bins, timestamps)
        # lockstep: the same events, order and timestamps cut the same panes
        assert np.array_equal(version_keys, keys), "version window out of step"
        for slot, count in missing.items():
            self.missing[slot] += count
        self.late_events += int(np.sum(keys < 0))
        self.events_total += n
        self._forget_evicted()
        if waiting:
            batch: list[Joined] = []
            pane_keys = keys.tolist()
            for i, (ident, w) in enumerate(waiting):
                w.pane = pane_keys[i]
                w.version = slots[i]
                joined = self.join.add_prediction(ident, w)
                if joined is not None:
                    batch.append(joined)
            self._count_labels(batch)
        return self

    def _bin(self, cols: PredictionColumns) -> tuple[np.ndarray, dict[str, int]]:
        """Each event's flat bin per slot, and the missing values per feature (pure)."""
        profile = self.profile
        n = len(cols)
        bins = np.empty((len(profile.slots), n), dtype=np.int64)
        missing: dict[str, int] = {}
        if self._numerical_slots:
            numerical = cols.numerical
            bins[self._numerical_slots] = self._binner.bin(numerical)
            for k, count in enumerate(np.count_nonzero(np.isnan(numerical), axis=1).tolist()):
                if count:
                    missing[self._numerical[k]] = count
        for j, slot in enumerate(profile.slots):
            if slot in self._numerical_index:
                continue
            slot_bins = profile.slot_bins(slot)
            if slot == "prediction":
                if profile.prediction_source == "score":
                    bins[j] = slot_bins.bin(cols.scores)  # type: ignore[arg-type]
                elif isinstance(slot_bins, NumericalBins):
                    bins[j] = slot_bins.bin(np.array(cols.predictions, dtype=np.float64))
                else:
                    bins[j] = slot_bins.bin([str(v) for v in cols.predictions])
                continue
            values = cols.categorical[self._categorical_index[slot]]
            bins[j] = slot_bins.bin(values)  # type: ignore[arg-type]
            count = values.count(None)
            if count:
                missing[slot] = count
        bins += np.where(bins >= 0, profile.offsets[:-1, None], 0)  # each slot's first bin
        return bins.T, missing

    def _forget_evicted(self) -> None:
        if self.window.evicted_keys:
            self.join.forget_panes(self.window.evicted_keys)
            self.window.evicted_keys.clear()

    # -- labels -----------------------------------------------------------------------------
    def ingest_labels(self, labels: Sequence[Label], now: float) -> ModelMonitor:
        """Join labels (``label.timestamp`` defaults to ``now``); waiting ones are buffered."""
        self.labels_total += len(labels)
        if not self.spec.joins_labels:
            return self
        batch: list[Joined] = []
        for lab in labels:
            at = now if lab.timestamp is None else lab.timestamp
            joined = self.join.add_label(lab.id, lab.label, at, now)
            if joined is not None:
                batch.append(joined)
        self._count_labels(batch)
        return self

    def _count_labels(self, batch: list[Joined]) -> None:
        """Add joined labels' performance cells to their predictions' panes, a pane at a time."""
        by_pane: dict[int, tuple[list[int], list[Joined]]] = {}
        nsums = self.layout.nsums
        sums: dict[int, np.ndarray] = {}
        versions = self.versions
        version_cells: dict[int, list[int]] = {}
        version_sums: dict[int, np.ndarray] = {}
        for joined in batch:
            w = joined.prediction
            cells, members = by_pane.setdefault(w.pane, ([], []))
            members.append(joined)
            block = self.layout.cells(w.prediction, joined.label, w.score)
            for c in block:
                cells.extend(r * self.region_size + self.perf_offset + c for r in w.regions)
            if w.version >= 0:
                version_cells.setdefault(w.pane, []).extend(versions.cells(w.version, block))
            if nsums:
                acc = sums.setdefault(w.pane, np.zeros(nsums * self.regions))
                one = self.layout.sums(w.prediction, joined.label)
                for r in w.regions:
                    acc[r * nsums : (r + 1) * nsums] += one
                if w.version >= 0:
                    vacc = version_sums.setdefault(
                        w.pane, np.zeros(versions.window.nsums, dtype=np.float64)
                    )
                    vacc[versions.sums_at(w.version)] += one
        for pane, (cells, members) in by_pane.items():
            flat = np.array(cells, dtype=np.int64)
            if self.window.add_to_pane(pane, flat, sums.get(pane)):
                for joined in members:
                    self.label_stats.observe(max(0.0, joined.delay_seconds))
            if pane in version_cells:
                versions.window.add_to_pane(
                    pane, np.array(version_cells[pane], dtype=np.int64), version_sums.get(pane)
                )

    # -- checkpoints ----------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The complete state (window, label join, counters): JSON-able meta and arrays."""
        window_meta, arrays = self.window.state()
        ls = self.label_stats
        meta = {
            "window": window_meta,
            "window_kind": type(self.window).__name__,
            "nbins": self.window.nbins,
            "join": self.join.state(),
            "label_stats": {
                "joined": ls.joined,
                "buckets": list(ls.delay_buckets),
                "sum": ls.delay_sum,
            },
            "events_total": self.events_total,
            "labels_total": self.labels_total,
            "late_events": self.late_events,
            "missing": dict(self.missing),
            "fingerprint": self.fingerprint,
        }
        version_meta, version_arrays = self.versions.state()
        meta["versions"] = version_meta
        meta["front"] = self.front.state()
        return meta, {**arrays, **version_arrays}

    def restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state`; raises ValueError if the model's layout has changed."""
        saved = meta.get("fingerprint")
        if saved is not None and saved != self.fingerprint:
            raise ValueError(
                f"model {self.spec.name}: the checkpoint was made with other bins, categories, "
                f"segments or window (layout fingerprint {saved[:12]}, now "
                f"{self.fingerprint[:12]}): the reference, features or window changed"
            )
        if meta["window_kind"] != type(self.window).__name__ or meta["nbins"] != self.window.nbins:
            raise ValueError(
                f"model {self.spec.name}: the checkpoint's window ({meta['window_kind']}, "
                f"{meta['nbins']} bins) does not match the configured one "
                f"({type(self.window).__name__}, {self.window.nbins} bins)"
            )
        self.window.restore(meta["window"], arrays)
        self.recent_tests.clear()
        self.join.restore(meta["join"])
        ls = meta["label_stats"]
        self.label_stats = LabelStats(ls["joined"], list(ls["buckets"]), ls["sum"])
        self.events_total = int(meta["events_total"])
        self.labels_total = int(meta["labels_total"])
        self.late_events = int(meta["late_events"])
        self.missing = {f: int(meta["missing"].get(f, 0)) for f in self.spec.features}
        self.front.restore(meta.get("front"))
        if not self.versions.restore(self.spec.name, meta.get("versions"), arrays, self.window):
            # the version window starts empty: waiting predictions forget their slots, or
            # their labels would land on whatever version takes that slot next
            for pending in self.join.predictions.values():
                pending.version = -1

    def reset(self) -> None:
        """Forget all state (a partition this replica no longer owns)."""
        fresh = ModelMonitor(
            self.spec,
            self.profile,
            self.layout,
            self.segments,
            self.reference_performance,
            self.estimator,
        )
        self.__dict__.update(fresh.__dict__)

    def expire_labels(self, now: float) -> int:
        return self.join.expire(now)

    # -- evaluation -------------------------------------------------------------------------
    def snapshot(self) -> ModelSnapshot:
        """The main window's snapshot with the version window's (call both under the same
        lock as ingestion: the pipeline's)."""
        recent = self.spec.rule.recent
        if not recent.enabled:
            snap = self.window.snapshot()
        else:
            snap = self.window.snapshot(recent.min_events, self.recent_tests.project)
            self.recent_tests.forget_unseen()
        return ModelSnapshot(
            snap.counts,
            snap.sums,
            snap.events,
            snap.oldest_timestamp,
            snap.newest_timestamp,
            snap.recent,
            self.versions.snapshot(),
        )

    def evaluate(self, now: float) -> Evaluation:
        self.expire_labels(now)
        return evaluate_snapshot(self, self.snapshot(), now)


def layout_fingerprint(monitor: ModelMonitor) -> str:
    """SHA-256 over everything that gives a count its meaning: each slot's bin edges or
    categories, the segments' values, the performance layout and the window's kind and
    length. A checkpoint made under another layout is refused, even with as many bins."""
    h = hashlib.sha256()

    def put(*parts: object) -> None:
        for part in parts:
            if isinstance(part, np.ndarray):
                h.update(np.ascontiguousarray(part).tobytes())
            else:
                h.update(repr(part).encode())
            h.update(b"\x1f")

    spec, profile, layout = monitor.spec, monitor.profile, monitor.layout
    put("window", spec.window_events, spec.window_seconds)
    for slot in profile.slots:
        bins = profile.slot_bins(slot)
        if isinstance(bins, NumericalBins):
            put("num", slot, bins.fine_edges, bins.psi_edges)
        else:
            put("cat", slot, bins.categories)
    put("prediction", profile.prediction_source)
    for seg in monitor.segments:
        put("segment", seg.column, seg.values, seg.first_region)
    score = layout.score_bins
    put("layout", layout.task, layout.positive, None if score is None else score.fine_edges)
    return h.hexdigest()


def _slot_stats(
    bins: NumericalBins | CategoricalBins, counts: np.ndarray
) -> tuple[float, float, int]:
    """PSI, and for a numerical slot the KS statistic and window size (p-values are
    computed for all slots at once, :func:`ks_pvalues`)."""
    if isinstance(bins, NumericalBins):
        psi = psi_from_counts(bins.reference_psi_counts, bins.psi_counts(counts))
        stat, n = ks_statistic(bins.reference_cdf, counts)
        return psi, stat, n
    return psi_from_counts(bins.reference_counts, counts), math.nan, 0


def evaluate_snapshot(
    monitor: ModelMonitor, snap: WindowSnapshot, now: float, previous: Hysteresis | None = None
) -> Evaluation:
    """Statistics and breaches of one window snapshot: O(bins), never O(events).

    Reads only the monitor's immutable parts (spec, profile, layout, segments);
    ``previous`` (the model's last evaluation) supplies the hysteresis state."""
    spec, profile, layout = monitor.spec, monitor.profile, monitor.layout
    rule = spec.rule
    n = snap.events
    was = previous.drifting if previous else frozenset()
    partial = {
        slot: _slot_stats(profile.slot_bins(slot), snap.counts[profile.slot_slice(j)])
        for j, slot in enumerate(profile.slots)
    }
    ks_slots = [s for s in profile.slots if isinstance(profile.slot_bins(s), NumericalBins)]
    pvalues = ks_pvalues(
        [partial[s][1] for s in ks_slots],
        [profile.slot_bins(s).n_reference for s in ks_slots],  # type: ignore[union-attr]
        [partial[s][2] for s in ks_slots],
    ).tolist()
    pvalue_of = dict(zip(ks_slots, pvalues, strict=True))
    stats = {
        slot: (psi, stat, pvalue_of.get(slot, math.nan)) for slot, (psi, stat, _) in partial.items()
    }
    numerical = [f for f in profile.features if isinstance(profile.features[f], NumericalBins)]
    adjusted = dict(
        zip(
            numerical,
            adjust_pvalues([stats[f][2] for f in numerical], rule.correction),
            strict=True,
        )
    )
    recent = (
        monitor.recent_tests.breaches(snap.recent, was, rule.resolve_ratio)
        if n >= rule.min_events
        else {}
    )
    results: list[FeatureResult] = []
    for f in profile.features:
        psi, stat, pvalue = stats[f]
        if f in adjusted:
            whole = rule.numerical(
                n, psi, adjusted[f] if rule.method == "ks" else pvalue, f in was, stat
            )
            kind = "numerical"
            ks: tuple[float | None, float | None, float | None] = (stat, pvalue, adjusted[f])
        else:
            whole = rule.categorical(n, psi, f in was)
            kind, ks = "categorical", (None, None, None)
        hit = recent.get(f)
        resolution, test = (
            (hit.events, hit.statistic) if hit else (n, "window") if whole else (None, None)
        )
        results.append(
            FeatureResult(
                f, kind, psi, ks[0], ks[1], whole or hit is not None, ks[2], resolution, test
            )
        )
    prediction_psi: float | None = None
    prediction_drift = False
    if "prediction" in stats:
        prediction_psi = stats["prediction"][0]
        prediction_drift = rule.prediction(
            n, prediction_psi, bool(previous and previous.prediction)
        )
    ratio = sum(r.drift for r in results) / len(results) if results else 0.0
    dataset_drift = rule.dataset(n, ratio, bool(previous and previous.dataset))

    def region_perf(region: int) -> tuple[int, dict[str, float]]:
        start = region * monitor.region_size + monitor.perf_offset
        block = snap.counts[start : start + layout.size]
        sums = snap.sums[region * layout.nsums : (region + 1) * layout.nsums]
        return int(block[0]), layout.read(block, sums)

    labeled, breach, metric = 0, False, None
    performance: dict[str, float] = {}
    if spec.performance is not None:
        labeled, performance = region_perf(0)
        metric = spec.performance.metric
        breach = spec.performance.breach(
            labeled,
            performance.get(metric, math.nan),
            monitor.reference_performance.get(metric, math.nan),
            bool(previous and previous.performance),
        )
    segments = []
    for seg in monitor.segments:
        for local, value in enumerate(seg.values):
            region = seg.first_region + local
            base = region * monitor.region_size
            psis = {
                f: psi_from_counts(
                    seg.reference[local][f],
                    _region_psi_counts(
                        profile.slot_bins(f),
                        snap.counts[base : base + monitor.region_size],
                        profile,
                        f,
                    ),
                )
                for f in profile.features
            }
            events = int(snap.counts[base + monitor.count_offset])
            seg_labeled, seg_perf = region_perf(region) if spec.performance is not None else (0, {})
            segments.append(SegmentResult(seg.column, value, events, seg_labeled, psis, seg_perf))
    quality, quality_hits = _quality(monitor, snap, previous)
    return Evaluation(
        model=spec.name,
        evaluated_at=now,
        window_events=n,
        window_oldest=snap.oldest_timestamp,
        window_newest=snap.newest_timestamp,
        features=tuple(results),
        prediction_psi=prediction_psi,
        prediction_drift=prediction_drift,
        dataset_drift=dataset_drift,
        enough_events=n >= rule.min_events,
        labeled_events=labeled,
        performance=performance,
        performance_reference=dict(monitor.reference_performance),
        performance_metric=metric,
        performance_breach=breach,
        segments=tuple(segments),
        labels_pending=len(monitor.join.labels),
        quality=quality,
        quality_rule=spec.quality is not None,
        quality_breaches=quality_hits,
        **_estimated(monitor, snap, previous),
        **_versions(monitor, snap, previous),
    )


def _estimated(
    monitor: ModelMonitor, snap: WindowSnapshot, previous: Hysteresis | None
) -> dict[str, Any]:
    """The :class:`Evaluation` fields of the performance estimated from the window's
    score-bin counts (region 0's prediction slot, ``monitor.estimated``): the estimates,
    the scored events they cover, and rule ``estimated_performance``'s metric, reference
    value (the estimate on the reference's own scores, so that both sides share the
    estimator's bias; the measured one if that is undefined) and breach."""
    estimator, profile = monitor.estimator, monitor.profile
    if estimator is None or "prediction" not in profile.slots:
        return {}
    counts = snap.counts[profile.slot_slice(profile.slots.index("prediction"))]
    scored = int(counts.sum())
    estimated = estimator.estimate(counts)
    out: dict[str, Any] = {"scored_events": scored, "performance_estimated": estimated}
    rule = monitor.spec.estimated
    if rule is None:
        return out
    # the estimate on the reference's own scores: both sides of the drop then share the
    # estimator's bias (e.g. a reference prediction that is not a function of the score)
    reference = estimator.reference.get(rule.metric, math.nan)
    if math.isnan(reference):
        reference = monitor.reference_performance.get(rule.metric, math.nan)
    out["estimated_metric"] = rule.metric
    out["estimated_reference"] = reference
    out["estimated_breach"] = rule.breach(
        scored,
        estimated.get(rule.metric, math.nan),
        reference,
        bool(previous and previous.estimated),
    )
    return out


def _versions(
    monitor: ModelMonitor, snap: WindowSnapshot, previous: Hysteresis | None
) -> dict[str, Any]:
    """The :class:`Evaluation` fields of model versions: every version's figures (none from
    a plain :class:`WindowSnapshot`, which has no version window), and rule
    ``version_regression``'s metric, newest and previous versions and breach."""
    version_snap = snap.versions if isinstance(snap, ModelSnapshot) else None
    versions = () if version_snap is None else monitor.versions.results(version_snap)
    rule = monitor.spec.versions
    newest, prev, breach = _version_rule(rule, versions, previous)
    return {
        "versions": versions,
        "version_metric": None if rule is None else rule.metric,
        "version_newest": newest,
        "version_previous": prev,
        "version_regression": breach,
    }


def _version_rule(
    rule: VersionRule | None, versions: tuple[VersionResult, ...], previous: Hysteresis | None
) -> tuple[str | None, str | None, bool]:
    """Rule ``version_regression`` over the versions in the window: the newest and previous
    (first-seen order, ``__other__`` excluded, each with events) and whether it breaches.
    The hysteresis applies only to the same pair that breached last time."""
    tracked = [v for v in versions if v.first_seen is not None and v.events > 0]
    if len(tracked) < 2:
        return (tracked[-1].version if tracked else None), None, False
    newest, prev = tracked[-1], tracked[-2]
    if rule is None:
        return newest.version, prev.version, False
    was = previous is not None and previous.versions == (newest.version, prev.version)
    breach = rule.compare(
        newest.labeled_events,
        newest.performance.get(rule.metric, math.nan),
        prev.labeled_events,
        prev.performance.get(rule.metric, math.nan),
        was,
    )
    return newest.version, prev.version, breach


def _quality(
    monitor: ModelMonitor, snap: WindowSnapshot, previous: Hysteresis | None
) -> tuple[dict[str, FeatureQuality], tuple[QualityBreach, ...]]:
    """Every feature's data quality over the whole model (region 0), and what breaches the
    model's ``data_quality`` rule (none without one)."""
    events = int(snap.counts[monitor.count_offset])
    quality = window_quality(monitor.profile, snap.counts[: monitor.region_size], events)
    rule = monitor.spec.quality
    if rule is None:
        return quality, ()
    return quality, quality_breaches(rule, quality, previous.quality if previous else frozenset())


def _region_psi_counts(
    bins: NumericalBins | CategoricalBins,
    region: np.ndarray,
    profile: ReferenceProfile,
    feature: str,
) -> np.ndarray:
    counts = region[profile.slot_slice(profile.slots.index(feature))]
    return bins.psi_counts(counts) if isinstance(bins, NumericalBins) else counts
