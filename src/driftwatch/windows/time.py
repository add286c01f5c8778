"""``window: {seconds: S}``: events within S seconds (event time) of the newest one.

Panes are S/100 wide, aligned to the epoch; a pane is evicted once its end is
S seconds or more before the newest event, so the window spans between S and
S + S/100 seconds. An event whose pane is already out of the window on arrival
is dropped and counted in ``late_events``.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from driftwatch.windows.panes import PANES, IntArray, Pane, PaneWindow


class TimeWindow(PaneWindow):
    def __init__(self, seconds: float, nbins: int, nsums: int = 0) -> None:
        if not seconds > 0:
            raise ValueError("seconds must be positive")
        super().__init__(nbins, nsums)
        self.seconds = float(seconds)
        self.pane_width = self.seconds / PANES
        self.late_events = 0
        #: The newest event time ever seen: the window's reference point.
        self.newest_seen: float | None = None
        self._keys: list[int] = []  # sorted keys of self._panes, which is kept in key order

    def _expired(self, key: int) -> bool:
        newest = self.newest_seen
        return newest is not None and (key + 1) * self.pane_width <= newest - self.seconds

    def add(self, bins: IntArray, timestamps: npt.NDArray[np.float64]) -> IntArray:
        """Add events; an event whose pane is already out of the window gets key -1."""
        if bins.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        self._note_newest(timestamps)
        keys = np.floor(timestamps / self.pane_width).astype(np.int64)
        dropped = 0
        for key in np.unique(keys).tolist():
            rows = keys == key
            n = int(rows.sum())
            if self._expired(key):
                dropped += n
                keys[rows] = -1
                continue
            self._add_to(self._pane(key), bins[rows], n, timestamps[rows])
        while self._panes and self._expired(self._panes[0].key):
            self._evict_oldest()
            self._keys.pop(0)
        self.late_events += dropped
        return keys

    def _extra_state(self) -> dict[str, Any]:
        return {"newest_seen": self.newest_seen, "late_events": self.late_events}

    def _restore_extra(self, meta: dict[str, Any]) -> None:
        self.newest_seen = meta["newest_seen"]
        self.late_events = int(meta["late_events"])
        self._keys = [p.key for p in self._panes]

    def find(self, key: int) -> Pane | None:
        i = bisect.bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            return self._panes[i]
        return None

    def _note_newest(self, timestamps: npt.NDArray[np.float64]) -> None:
        hi = float(timestamps.max())
        if math.isfinite(hi) and (self.newest_seen is None or hi > self.newest_seen):
            self.newest_seen = hi

    def _pane(self, key: int) -> Pane:
        found = self.find(key)
        if found is not None:
            return found
        i = bisect.bisect_left(self._keys, key)
        pane = Pane(key, self.nbins, self.nsums)
        self._keys.insert(i, key)
        self._panes.insert(i, pane)
        return pane
