"""Sliding windows kept as bin counts, and the reference profiles that define the bins."""

from __future__ import annotations

from driftwatch.windows.count import CountWindow
from driftwatch.windows.panes import PaneWindow, WindowSnapshot
from driftwatch.windows.reference import (
    CategoricalBins,
    NumericalBins,
    ReferenceProfile,
    SlotBins,
)
from driftwatch.windows.time import TimeWindow

__all__ = [
    "CategoricalBins",
    "CountWindow",
    "NumericalBins",
    "PaneWindow",
    "ReferenceProfile",
    "SlotBins",
    "TimeWindow",
    "WindowSnapshot",
]
