"""``window: {events: N}``: the most recent N events, kept as 100 panes of N/100."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from driftwatch.windows.panes import PANES, IntArray, Pane, PaneWindow


class CountWindow(PaneWindow):
    """Holds the newest ``size`` events, plus at most one partly evictable pane (< 1% more)."""

    def __init__(self, size: int, nbins: int, nsums: int = 0) -> None:
        if size <= 0:
            raise ValueError("size must be positive")
        super().__init__(nbins, nsums)
        self.size = size
        self.pane_size = max(1, size // PANES)
        self._next_key = 0

    def add(self, bins: IntArray, timestamps: npt.NDArray[np.float64]) -> IntArray:
        """Add events; every event enters a count window, so no key is -1."""
        n = bins.shape[0]
        keys = np.empty(n, dtype=np.int64)
        start = 0
        while start < n:
            pane = self._panes[-1] if self._panes else None
            if pane is None or pane.n >= self.pane_size:
                pane = Pane(self._next_key, self.nbins, self.nsums)
                self._next_key += 1
                self._panes.append(pane)
            take = min(self.pane_size - pane.n, n - start)
            self._add_to(pane, bins[start : start + take], take, timestamps[start : start + take])
            keys[start : start + take] = pane.key
            start += take
            while self._panes and self.events - self._panes[0].n >= self.size:
                self._evict_oldest()
        return keys

    def _extra_state(self) -> dict[str, Any]:
        return {"next_key": self._next_key}

    def _restore_extra(self, meta: dict[str, Any]) -> None:
        self._next_key = int(meta["next_key"])

    def find(self, key: int) -> Pane | None:
        if not self._panes:
            return None
        i = key - self._panes[0].key
        return self._panes[i] if 0 <= i < len(self._panes) else None
