"""Pane-based windows: counts are added per pane and evicted a whole pane at a time.

A window keeps ``totals`` (the sum of its panes' counts) up to date on every
add and eviction, so reading it is O(bins) whatever its length. Counts are integers,
so adding and subtracting them is exact. Float sums (regression errors) are never
subtracted: each pane accumulates its own, and a snapshot adds the panes' sums with
``math.fsum``, so a huge or infinite error leaves the window exactly when its pane does
(no cancellation drift, no ``inf - inf = NaN``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

#: Panes per window length: 100 keeps the window within 1% of its nominal size.
PANES = 100

#: Growth of the sizes :meth:`PaneWindow.recent` gives: sqrt(2) (100, 142, 202, 286, ...).
RECENT_GROWTH = math.sqrt(2.0)


class Pane:
    """The counts of one slice of the stream.

    A pane starts *sparse* — the flat bin indices it was given, 4 bytes each — and turns
    *dense* (one int32 per bin) once it holds more indices than there are bins. So a
    model with many bins and a short window costs memory in proportion to its events,
    and a long window at most one count vector per pane.
    """

    __slots__ = ("chunks", "counts", "key", "n", "newest", "nidx", "oldest", "sums")

    def __init__(self, key: int, nbins: int, nsums: int = 0) -> None:
        self.key = key
        self.n = 0
        self.counts: npt.NDArray[np.int32] | None = None
        self.chunks: list[npt.NDArray[np.int32]] = []
        self.nidx = 0
        self.sums = np.zeros(nsums, dtype=np.float64)
        self.oldest = math.inf
        self.newest = -math.inf

    def add(self, flat: IntArray, nbins: int) -> None:
        """Count one at each flat bin index (indices may repeat)."""
        if self.counts is not None:
            if flat.size * 8 < nbins:
                np.add.at(self.counts, flat, 1)
            else:
                self.counts += np.bincount(flat, minlength=nbins).astype(np.int32)
            return
        self.chunks.append(flat.astype(np.int32))
        self.nidx += flat.size
        if self.nidx > nbins:  # denser than a count vector: switch
            self.counts = np.bincount(np.concatenate(self.chunks), minlength=nbins).astype(np.int32)
            self.chunks = []

    def dense(self, nbins: int) -> IntArray:
        if self.counts is not None:
            return self.counts.astype(np.int64)
        if not self.chunks:
            return np.zeros(nbins, dtype=np.int64)
        return np.bincount(np.concatenate(self.chunks), minlength=nbins)

    def indices(self) -> npt.NDArray[np.int32]:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int32)


def _fsum(values: npt.NDArray[np.float64]) -> float:
    """``math.fsum``, with an overflowing total as ±inf (fsum raises) and NaN kept."""
    try:
        return math.fsum(values.tolist())
    except OverflowError:
        with np.errstate(over="ignore"):
            return float(np.sum(values))


@dataclass(frozen=True, eq=False)
class WindowSnapshot:
    """An immutable copy of a window's totals, safe to evaluate on another thread."""

    counts: IntArray
    sums: npt.NDArray[np.float64]
    events: int
    oldest_timestamp: float | None
    newest_timestamp: float | None
    #: The newest panes' summaries at growing sizes: ``(events, summary)`` pairs, see
    #: :meth:`PaneWindow.recent`; empty unless the snapshot asked for them.
    recent: tuple[tuple[int, npt.NDArray[np.float64]], ...] = ()


class PaneWindow(ABC):
    """Shared machinery of count and time windows."""

    def __init__(self, nbins: int, nsums: int = 0) -> None:
        if nbins <= 0:
            raise ValueError("nbins must be positive")
        self.nbins = nbins
        self.nsums = nsums
        self.totals: IntArray = np.zeros(nbins, dtype=np.int64)
        #: Keys of evicted panes, for the owner to forget what it kept per pane.
        self.evicted_keys: list[int] = []
        self.events = 0
        self.evicted_events = 0
        self._panes: deque[Pane] = deque()

    @property
    def pane_count(self) -> int:
        return len(self._panes)

    def _add_flat(self, pane: Pane, flat: IntArray) -> None:
        pane.add(flat, self.nbins)
        if flat.size * 8 < self.nbins:
            np.add.at(self.totals, flat, 1)
        else:
            self.totals += np.bincount(flat, minlength=self.nbins)

    def _add_to(
        self, pane: Pane, bins: IntArray, n: int, timestamps: npt.NDArray[np.float64]
    ) -> None:
        if timestamps.size:
            pane.oldest = min(pane.oldest, float(timestamps.min()))
            pane.newest = max(pane.newest, float(timestamps.max()))
        self._add_flat(pane, bins[bins >= 0])
        pane.n += n
        self.events += n

    def _evict_oldest(self) -> None:
        pane = self._panes.popleft()
        self.totals -= pane.dense(self.nbins)
        self.events -= pane.n
        self.evicted_events += pane.n
        self.evicted_keys.append(pane.key)

    @abstractmethod
    def find(self, key: int) -> Pane | None:
        """The pane with this key, or None once it has left the window."""

    @abstractmethod
    def add(self, bins: IntArray, timestamps: npt.NDArray[np.float64]) -> IntArray:
        """Add events (one row of flat bin indices each, -1 = none); returns each event's
        pane key, or -1 for an event dropped as too old for the window."""

    def add_to_pane(
        self, key: int, bins: IntArray, sums: npt.NDArray[np.float64] | None = None
    ) -> bool:
        """Add counts (flat bin indices, -1 = none) and sums to a pane still in the window,
        without adding events: how a late-arriving label joins its prediction's pane."""
        pane = self.find(key)
        if pane is None:
            return False
        self._add_flat(pane, bins[bins >= 0])
        if sums is not None:
            pane.sums += sums
        return True

    @property
    def sum_totals(self) -> npt.NDArray[np.float64]:
        """The panes' float sums added up, correctly rounded per column (``math.fsum``)."""
        if not self.nsums or not self._panes:
            return np.zeros(self.nsums, dtype=np.float64)
        rows = np.stack([p.sums for p in self._panes])
        return np.array([_fsum(rows[:, k]) for k in range(self.nsums)], np.float64)

    @property
    def oldest_timestamp(self) -> float | None:
        """The oldest event time in the window."""
        lo = min((p.oldest for p in self._panes), default=math.inf)
        return None if math.isinf(lo) else lo

    @property
    def newest_timestamp(self) -> float | None:
        """The newest event time in the window."""
        hi = max((p.newest for p in self._panes), default=-math.inf)
        return None if math.isinf(hi) else hi

    # -- checkpoints ----------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything needed to rebuild this window exactly: JSON-able meta and arrays.

        Dense panes are stored as rows of ``counts``; sparse ones as their indices,
        concatenated in ``indices`` with ``index_offsets`` (dense panes: empty ranges)."""
        panes = list(self._panes)
        dense = [p for p in panes if p.counts is not None]
        sparse = [p.indices() if p.counts is None else np.zeros(0, np.int32) for p in panes]
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in sparse])]).astype(np.int64)
        arrays: dict[str, np.ndarray] = {
            "keys": np.array([p.key for p in panes], dtype=np.int64),
            "n": np.array([p.n for p in panes], dtype=np.int64),
            "times": np.array([(p.oldest, p.newest) for p in panes], np.float64).reshape(-1, 2),
            "is_dense": np.array([p.counts is not None for p in panes], dtype=np.bool_),
            "counts": np.stack([p.counts for p in dense if p.counts is not None])
            if dense
            else np.zeros((0, self.nbins), np.int32),
            "indices": np.concatenate(sparse) if sparse else np.zeros(0, np.int32),
            "index_offsets": offsets,
            "sums": np.stack([p.sums for p in panes]) if panes else np.zeros((0, self.nsums)),
            "totals": self.totals.copy(),
            "sum_totals": self.sum_totals.copy(),
        }
        meta = {"events": self.events, "evicted_events": self.evicted_events, **self._extra_state()}
        return meta, arrays

    def restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if arrays["totals"].shape != (self.nbins,) or arrays["sums"].shape[1:] != (self.nsums,):
            raise ValueError(
                f"window layout changed: {arrays['totals'].shape[0]} bins in the checkpoint, "
                f"{self.nbins} now (features, reference or segments differ)"
            )
        self._panes.clear()
        dense_rows = iter(arrays["counts"])
        offsets = arrays["index_offsets"]
        for i, key in enumerate(arrays["keys"].tolist()):
            pane = Pane(int(key), self.nbins, self.nsums)
            pane.n = int(arrays["n"][i])
            pane.oldest, pane.newest = (float(x) for x in arrays["times"][i])
            if arrays["is_dense"][i]:
                pane.counts = next(dense_rows).astype(np.int32)
            else:
                idx = arrays["indices"][offsets[i] : offsets[i + 1]].astype(np.int32)
                pane.chunks = [idx] if idx.size else []
                pane.nidx = int(idx.size)
            pane.sums = arrays["sums"][i].astype(np.float64)
            self._panes.append(pane)
        self.totals = arrays["totals"].astype(np.int64)
        self.events = int(meta["events"])
        self.evicted_events = int(meta["evicted_events"])
        self.evicted_keys = []
        self._restore_extra(meta)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _restore_extra(self, meta: dict[str, Any]) -> None:
        return None

    def recent(
        self, min_events: int, project: Callable[[Pane], npt.NDArray[np.float64]]
    ) -> tuple[tuple[int, npt.NDArray[np.float64]], ...]:
        """Summaries of the newest whole panes, at sizes growing from ``min_events``.

        For ``s = min_events, min_events x RECENT_GROWTH, ...``: the fewest newest panes
        holding at least ``s`` events, as ``(their events, the sum of project(pane) over
        them)``, as long as they hold at most half the window's events. Sizes the same
        panes already cover are given once. Read from the panes (the
        window keeps no raw values); ``project`` may cache per pane key and ``n``."""
        if min_events < 1:
            raise ValueError("min_events must be >= 1")
        out: list[tuple[int, npt.NDArray[np.float64]]] = []
        acc: npt.NDArray[np.float64] | None = None
        events = 0
        target = min_events
        for pane in reversed(self._panes):
            if target >= self.events:
                break
            part = project(pane)
            acc = part.copy() if acc is None else acc + part
            events += pane.n
            if 2 * events > self.events:  # newest means at most half the window
                break
            if events >= target:
                out.append((events, acc.copy()))
                while target <= events:
                    target = math.ceil(target * RECENT_GROWTH)
        return tuple(out)

    def snapshot(
        self,
        recent_min_events: int | None = None,
        project: Callable[[Pane], npt.NDArray[np.float64]] | None = None,
    ) -> WindowSnapshot:
        """A copy of the totals; with ``recent_min_events`` and ``project``, also
        :meth:`recent`."""
        return WindowSnapshot(
            self.totals.copy(),
            self.sum_totals.copy(),
            self.events,
            self.oldest_timestamp,
            self.newest_timestamp,
            ()
            if recent_min_events is None or project is None
            else self.recent(recent_min_events, project),
        )
