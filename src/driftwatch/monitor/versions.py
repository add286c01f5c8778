"""Model versions (CONTRACT section 9): per ``model_version``, the window's events, labelled
performance and prediction PSI, and rule ``version_regression``'s inputs.

**State.** A model keeps a second pane window (:class:`VersionWindow`), of the same kind
and length as its main window, fed in lockstep with it: the same events, in the same
order, with the same timestamps, so both windows cut and evict the same panes and an
event's pane key is the same in both (``ModelMonitor.ingest_columns`` checks it). Events
without a ``model_version`` enter the version window too (all their bins -1), which keeps
the panes aligned; they are in no version's figures.

Its flat layout is ``max_versions + 1`` slots, each ``[events, prediction bins...,
performance block...]`` (the prediction slot of the reference profile, none if the
reference has no prediction or score; ``monitor.performance`` for the block), and
``layout.nsums`` float sums per slot (regression errors). A joined label adds its
performance cells (and sums) to its prediction's pane at the prediction's version slot
(``Awaiting.version``), exactly as the main window does for region 0.

**Slots.** A version takes a slot the first time one of its events arrives while a slot
is free, in first-seen order (a counter: the newest version is the one first seen last).
The last slot, ``__other__``, pools the events of versions that found every slot taken.
A slot whose version has no events left in the window is freed after the add that
evicted them (and can be taken by the next new version); a version that comes back
after its slot was freed is new again (first seen anew). No label can be waiting on a
freed slot: its pane would still hold one of the slot's events.

**Checkpoints.** The version window and the slot map travel in the monitor's state
(``meta["versions"]`` and arrays prefixed ``versions.``). A checkpoint from before this
feature, or one made with another ``max_versions`` (or window), restores the main state
and starts the version window empty (logged at INFO); it is never refused. "Empty" keeps
the main window's panes (keys, event counts, times) with no counts in them: the restored
events count as unversioned, and the two windows stay in lockstep. The layout
fingerprint of the main window does not cover the version window, so a config reload
that changes only ``versions`` keeps the model's state (``Pipeline.adopt`` moves it
with ``state()`` / ``restore()``; the version window too while ``max_versions`` is
unchanged).

**Rule.** ``version_regression`` compares the newest version that has events in the
window with the version first seen just before it that still has events (``__other__``
never takes part): it breaches when both have at least ``min_labels`` labelled
predictions and the newest is worse by more than ``max_drop`` (higher is worse for mae
and rmse). With no previous version serving there is nothing to compare: no breach, so
a firing rule resolves through the normal policy.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftwatch.events.decode import POOLED_VERSION
from driftwatch.monitor.performance import PerformanceLayout
from driftwatch.stats.psi import psi_from_counts
from driftwatch.windows.count import CountWindow
from driftwatch.windows.panes import IntArray, WindowSnapshot
from driftwatch.windows.reference import CategoricalBins, NumericalBins
from driftwatch.windows.time import TimeWindow

log = logging.getLogger(__name__)

#: The pooled slot's name: versions that found every slot taken.
OTHER = POOLED_VERSION  # "__other__": no event may carry it (invalid_version)

_PREFIX = "versions."


@dataclass(frozen=True)
class VersionResult:
    """One version's figures over the window."""

    version: str
    events: int
    labeled_events: int
    performance: dict[str, float]
    prediction_psi: float | None
    #: first-seen order (higher: newer); None for ``__other__``
    first_seen: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "events": self.events,
            "labeled_events": self.labeled_events,
            "performance": {k: _num(v) for k, v in self.performance.items()},
            "prediction_psi": None if self.prediction_psi is None else _num(self.prediction_psi),
            "first_seen": self.first_seen,
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


@dataclass(frozen=True, eq=False)
class VersionSnapshot:
    """The version window's totals and its slot map, copied under the ingest lock."""

    window: WindowSnapshot
    names: tuple[str | None, ...]
    first_seen: tuple[int, ...]


class VersionWindow:
    """A model's per-version counts: a pane window in lockstep with the main one."""

    def __init__(
        self,
        max_versions: int,
        window_events: int | None,
        window_seconds: float | None,
        prediction: NumericalBins | CategoricalBins | None,
        layout: PerformanceLayout,
    ) -> None:
        if max_versions < 1:
            raise ValueError("max_versions must be >= 1")
        self.max_versions = max_versions
        self.slots = max_versions + 1  # the last one is __other__
        self.prediction = prediction
        self.layout = layout
        self.pred_nbins = 0 if prediction is None else prediction.nbins
        self.perf_offset = 1 + self.pred_nbins
        self.slot_size = 1 + self.pred_nbins + layout.size
        nbins, nsums = self.slots * self.slot_size, self.slots * layout.nsums
        self.window: CountWindow | TimeWindow
        if window_events is not None:
            self.window = CountWindow(window_events, nbins, nsums)
        else:
            assert window_seconds is not None
            self.window = TimeWindow(window_seconds, nbins, nsums)
        self._clear_slots()

    def blank(self, main: CountWindow | TimeWindow) -> None:
        """Empty: no version, no counts, but ``main``'s panes (keys, events, times) and
        clock, so the next events cut the same panes in both windows."""
        meta, main_arrays = main.state()
        panes = len(main_arrays["keys"])
        arrays = {
            "keys": main_arrays["keys"],
            "n": main_arrays["n"],
            "times": main_arrays["times"],
            "is_dense": np.zeros(panes, dtype=np.bool_),
            "counts": np.zeros((0, self.window.nbins), np.int32),
            "indices": np.zeros(0, np.int32),
            "index_offsets": np.zeros(panes + 1, np.int64),
            "sums": np.zeros((panes, self.window.nsums)),
            "totals": np.zeros(self.window.nbins, np.int64),
            "sum_totals": np.zeros(self.window.nsums),
        }
        self.window.restore(meta, arrays)
        self._clear_slots()

    def _clear_slots(self) -> None:
        #: slot -> version name (None: free), for the first ``max_versions`` slots
        self.names: list[str | None] = [None] * self.max_versions
        #: slot -> first-seen order of its version (0 while free)
        self.first_seen: list[int] = [0] * self.max_versions
        self.slot_of: dict[str, int] = {}
        self.counter = 0
        #: slots pooled into ``__other__`` since the owner last looked (see slots_for)
        self.demoted: list[int] = []
        #: versions pooled into ``__other__`` (they stay there while it holds events)
        self.pooled: set[str] = set()

    # -- ingest -----------------------------------------------------------------------------
    def slots_for(self, versions: list[str | None]) -> list[int]:
        """Each event's slot (-1: no version), taking free slots for new versions in
        first-seen order; when none is free, the oldest version is pooled in
        ``__other__`` (:meth:`_demote_oldest`) and the new one takes its slot."""
        slot_of, other = self.slot_of, self.max_versions
        out: list[int] = []
        for v in versions:
            if v is None:
                out.append(-1)
                continue
            s = slot_of.get(v)
            if s is None:
                if v in self.pooled:  # pooled as older than every tracked version
                    out.append(other)
                    continue
                s = self._take(v)
                if s is None:  # every slot taken: the oldest version goes to __other__
                    freed = self._demote_oldest()
                    if freed is not None:
                        # this batch's earlier events of the demoted version go with it
                        out = [other if x == freed else x for x in out]
                        s = self._take(v)
                if s is None:
                    s = other
                else:
                    slot_of[v] = s
            out.append(s)
        return out

    def _demote_oldest(self) -> int | None:
        """Pool the oldest-first-seen version into ``__other__`` (CONTRACT section 9: "older
        ones pooled"): its counts and sums move to the last slot in every pane, its slot is
        freed, and it is listed in :attr:`demoted` for the label join to follow."""
        taken = [s for s, name in enumerate(self.names) if name is not None]
        if not taken:
            return None
        s = min(taken, key=lambda k: self.first_seen[k])
        size, other = self.slot_size, self.max_versions
        lo, hi, to = s * size, (s + 1) * size, other * size
        nsums = self.layout.nsums
        w = self.window
        for pane in w._panes:
            if pane.counts is not None:
                pane.counts[to : to + size] += pane.counts[lo:hi]
                pane.counts[lo:hi] = 0
            else:
                pane.chunks = [
                    np.where((c >= lo) & (c < hi), c + (to - lo), c).astype(np.int32)
                    for c in pane.chunks
                ]
            if nsums:
                pane.sums[other * nsums : (other + 1) * nsums] += pane.sums[
                    s * nsums : (s + 1) * nsums
                ]
                pane.sums[s * nsums : (s + 1) * nsums] = 0.0
        w.totals[to : to + size] += w.totals[lo:hi]
        w.totals[lo:hi] = 0
        name = self.names[s]
        assert name is not None
        del self.slot_of[name]
        self.pooled.add(name)
        self.names[s] = None
        self.first_seen[s] = 0
        self.demoted.append(s)
        return s

    def _take(self, version: str) -> int | None:
        for s, name in enumerate(self.names):
            if name is None:
                self.counter += 1
                self.names[s] = version
                self.first_seen[s] = self.counter
                return s
        return None

    def add(
        self,
        slots: list[int],
        prediction_bins: IntArray | None,
        timestamps: npt.NDArray[np.float64],
    ) -> IntArray:
        """Add a batch (every event, versioned or not: the panes stay aligned with the main
        window's). ``prediction_bins``: each event's bin within the prediction slot (-1:
        none). Returns the pane keys; frees the slots left without events."""
        n = len(slots)
        slot = np.asarray(slots, dtype=np.int64).reshape(n)
        base = slot * self.slot_size
        rows = np.full((n, 2), -1, dtype=np.int64)
        has = slot >= 0
        rows[:, 0] = np.where(has, base, -1)
        if prediction_bins is not None and self.pred_nbins:
            ok = has & (prediction_bins >= 0)
            rows[:, 1] = np.where(ok, base + 1 + prediction_bins, -1)
        keys = self.window.add(rows, timestamps)
        self.window.evicted_keys.clear()  # the main window reports evictions to the join
        self._free_empty()
        return keys

    def _free_empty(self) -> None:
        totals = self.window.totals
        if self.pooled and totals[self.max_versions * self.slot_size] == 0:
            self.pooled.clear()  # __other__ is empty: its versions left the window
        for s, name in enumerate(self.names):
            if name is not None and totals[s * self.slot_size] == 0:
                self.names[s] = None
                self.first_seen[s] = 0
                del self.slot_of[name]

    def cells(self, slot: int, block_cells: list[int]) -> list[int]:
        """Flat positions of a labelled prediction's performance cells at ``slot``."""
        start = slot * self.slot_size + self.perf_offset
        return [start + c for c in block_cells]

    def sums_at(self, slot: int) -> slice:
        n = self.layout.nsums
        return slice(slot * n, (slot + 1) * n)

    # -- evaluation ---------------------------------------------------------------------------
    def snapshot(self) -> VersionSnapshot:
        return VersionSnapshot(self.window.snapshot(), tuple(self.names), tuple(self.first_seen))

    def results(self, snap: VersionSnapshot) -> tuple[VersionResult, ...]:
        """Every version with events in the window, in first-seen order, ``__other__`` last."""
        counts, sums = snap.window.counts, snap.window.sums
        nsums = self.layout.nsums
        out: list[tuple[float, VersionResult]] = []
        for s in range(self.slots):
            name = snap.names[s] if s < self.max_versions else OTHER
            if name is None:
                continue
            base = s * self.slot_size
            events = int(counts[base])
            if events == 0:
                continue
            block = counts[base + self.perf_offset : base + self.slot_size]
            perf = self.layout.read(block, sums[s * nsums : (s + 1) * nsums])
            psi: float | None = None
            if self.prediction is not None:
                pred = counts[base + 1 : base + 1 + self.pred_nbins]
                if isinstance(self.prediction, NumericalBins):
                    psi = psi_from_counts(
                        self.prediction.reference_psi_counts, self.prediction.psi_counts(pred)
                    )
                else:
                    psi = psi_from_counts(self.prediction.reference_counts, pred)
            first = snap.first_seen[s] if s < self.max_versions else None
            order = math.inf if first is None else float(first)
            out.append((order, VersionResult(name, events, int(block[0]), perf, psi, first)))
        out.sort(key=lambda pair: pair[0])
        return tuple(r for _, r in out)

    # -- checkpoints --------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        window_meta, arrays = self.window.state()
        meta = {
            "max_versions": self.max_versions,
            "window_kind": type(self.window).__name__,
            "nbins": self.window.nbins,
            "nsums": self.window.nsums,
            "window": window_meta,
            "names": list(self.names),
            "first_seen": list(self.first_seen),
            "counter": self.counter,
            "pooled": sorted(self.pooled),
        }
        return meta, {_PREFIX + k: v for k, v in arrays.items()}

    def restore(
        self,
        model: str,
        meta: dict[str, Any] | None,
        arrays: dict[str, np.ndarray],
        main: CountWindow | TimeWindow,
    ) -> bool:
        """Restore :meth:`state` (after the main window ``main`` was restored); a checkpoint
        without version state, or with another ``max_versions`` or window, starts the
        version window empty (logged at INFO): ``main``'s panes without their counts, so
        the two stay in lockstep and the restored events count as unversioned. Returns
        whether the version state was restored (False: it starts empty, and predictions
        waiting for labels must forget their slots)."""
        self.blank(main)
        if meta is None:
            log.info(
                "model %s: the checkpoint has no model-version state (made before version "
                "tracking): the version window starts empty",
                model,
            )
            return False
        if (
            meta.get("max_versions") != self.max_versions
            or meta.get("window_kind") != type(self.window).__name__
            or meta.get("nbins") != self.window.nbins
            or meta.get("nsums") != self.window.nsums
        ):
            log.info(
                "model %s: the checkpoint's model-version state was made with max_versions "
                "%s (now %d) or another window: the version window starts empty",
                model,
                meta.get("max_versions"),
                self.max_versions,
            )
            return False
        own = {k[len(_PREFIX) :]: v for k, v in arrays.items() if k.startswith(_PREFIX)}
        if not np.array_equal(own["keys"], [p.key for p in main._panes]) or not np.array_equal(
            own["n"], [p.n for p in main._panes]
        ):
            log.info(
                "model %s: the checkpoint's model-version window is not in step with its "
                "window: the version window starts empty",
                model,
            )
            return False
        self.window.restore(meta["window"], own)
        self.names = [None if n is None else str(n) for n in meta["names"]]
        self.first_seen = [int(x) for x in meta["first_seen"]]
        self.counter = int(meta["counter"])
        self.slot_of = {n: s for s, n in enumerate(self.names) if n is not None}
        self.pooled = {str(n) for n in meta.get("pooled", [])}
        return True
