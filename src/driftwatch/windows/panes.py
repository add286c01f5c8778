"""Pane-based windows: counts are added per pane and evicted a whole pane at a time.

A window keeps ``totals`` (the sum of its panes' counts) up to date on every
add and eviction, so reading it is O(bins) whatever its length.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

#: Panes per window length: 100 keeps the window within 1% of its nominal size.
PANES = 100


class Pane:
    """The counts of one slice of the stream."""

    __slots__ = ("counts", "key", "n")

    def __init__(self, key: int, nbins: int) -> None:
        self.key = key
        self.n = 0
        # int32 halves the memory of long windows; a pane holds < 2**31 events.
        self.counts = np.zeros(nbins, dtype=np.int32)


@dataclass(frozen=True, eq=False)
class WindowSnapshot:
    """An immutable copy of a window's totals, safe to evaluate on another thread."""

    counts: IntArray
    events: int
    oldest_timestamp: float | None
    newest_timestamp: float | None


class PaneWindow:
    """Shared machinery of count and time windows."""

    def __init__(self, nbins: int) -> None:
        if nbins <= 0:
            raise ValueError("nbins must be positive")
        self.nbins = nbins
        self.totals: IntArray = np.zeros(nbins, dtype=np.int64)
        self.events = 0
        self.evicted_events = 0
        self.oldest_timestamp: float | None = None
        self.newest_timestamp: float | None = None
        self._panes: deque[Pane] = deque()

    @property
    def pane_count(self) -> int:
        return len(self._panes)

    def _count(self, bins: IntArray) -> IntArray:
        flat = bins[bins >= 0]
        return np.bincount(flat, minlength=self.nbins)

    def _add_to(self, pane: Pane, bins: IntArray, n: int) -> None:
        counts = self._count(bins)
        pane.counts += counts.astype(np.int32)
        pane.n += n
        self.totals += counts
        self.events += n

    def _evict_oldest(self) -> None:
        pane = self._panes.popleft()
        self.totals -= pane.counts
        self.events -= pane.n
        self.evicted_events += pane.n

    def _note_times(self, timestamps: npt.NDArray[np.float64]) -> None:
        if timestamps.size == 0:
            return
        lo, hi = float(timestamps.min()), float(timestamps.max())
        self.oldest_timestamp = (
            lo if self.oldest_timestamp is None else min(self.oldest_timestamp, lo)
        )
        self.newest_timestamp = (
            hi if self.newest_timestamp is None else max(self.newest_timestamp, hi)
        )

    def snapshot(self) -> WindowSnapshot:
        return WindowSnapshot(
            self.totals.copy(), self.events, self.oldest_timestamp, self.newest_timestamp
        )
