"""Drift and performance statistics on arrays and on binned counts.

Stats return numbers; they never decide. Thresholds live in ``driftwatch.detectors``.
This package imports numpy and scipy and nothing else of driftwatch.
"""

from __future__ import annotations

from driftwatch.stats.categorical import category_counts, psi_categorical
from driftwatch.stats.ks import ks, ks_from_counts
from driftwatch.stats.psi import PSI_EPSILON, decile_edges, psi, psi_from_counts

__all__ = [
    "PSI_EPSILON",
    "category_counts",
    "decile_edges",
    "ks",
    "ks_from_counts",
    "psi",
    "psi_categorical",
    "psi_from_counts",
]

from driftwatch.stats import performance

__all__ += ["performance"]
