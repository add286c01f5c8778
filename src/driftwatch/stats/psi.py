"""Population Stability Index (CONTRACT section 4)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Bin proportions are clipped below at this value before the logarithm.
PSI_EPSILON = 1e-4

FloatArray = npt.NDArray[np.float64]

#: Exactly the probabilities CONTRACT section 4 names (``np.linspace`` differs in the last bit).
DECILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def decile_edges(reference: npt.ArrayLike) -> FloatArray:
    """The reference's deciles 0.1..0.9, duplicates removed (the PSI bin edges)."""
    ref = np.asarray(reference, dtype=np.float64)
    if ref.size == 0:
        raise ValueError("reference is empty")
    return np.unique(np.quantile(ref, DECILES))


def psi_from_counts(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """PSI of two count (or proportion) vectors over the same bins.

    ``sum((c - r) * ln(c / r))`` with both proportions clipped below at 1e-4.
    Returns NaN when either side is empty.
    """
    r = np.asarray(reference_counts, dtype=np.float64)
    c = np.asarray(current_counts, dtype=np.float64)
    if r.shape != c.shape:
        raise ValueError(f"bin counts differ in shape: {r.shape} vs {c.shape}")
    r_total = r.sum()
    c_total = c.sum()
    if r_total <= 0 or c_total <= 0:
        return float("nan")
    rp = np.clip(r / r_total, PSI_EPSILON, None)
    cp = np.clip(c / c_total, PSI_EPSILON, None)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def psi(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """PSI of a numerical feature: bins at the reference deciles, outer bins open."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    edges = decile_edges(ref)
    nbins = edges.size + 1
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=nbins)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=nbins)
    return psi_from_counts(r, c)
