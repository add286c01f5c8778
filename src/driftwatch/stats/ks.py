"""Two-sample Kolmogorov-Smirnov: exact on arrays, and from binned counts for the daemon."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats as _st


def ks(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float]:
    """``scipy.stats.ks_2samp(reference, current)`` as ``(statistic, pvalue)``."""
    res = _st.ks_2samp(
        np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    )
    return float(res.statistic), float(res.pvalue)


def ks_pvalue(statistic: float, n_reference: int, n_current: int) -> float:
    """Asymptotic two-sided p-value, as ``ks_2samp(method="asymp")`` computes it."""
    if n_reference <= 0 or n_current <= 0:
        return float("nan")
    en = n_reference * n_current / (n_reference + n_current)
    return float(np.clip(_st.kstwo.sf(statistic, np.round(en)), 0.0, 1.0))


def ks_from_counts(
    reference_cdf: npt.NDArray[np.float64],
    current_counts: npt.ArrayLike,
    n_reference: int,
) -> tuple[float, float]:
    """KS statistic and p-value of a window kept as fine bin counts.

    ``reference_cdf[j]`` is the reference's exact empirical CDF at the right end
    of fine bin ``j``; ``current_counts[j]`` the window's count in that bin. The
    statistic is exact at every bin boundary, so its error is at most the
    reference mass strictly inside one bin (see ``windows.reference``).
    """
    c = np.asarray(current_counts, dtype=np.float64)
    n = c.sum()
    if n <= 0:
        return float("nan"), float("nan")
    cur_cdf = np.cumsum(c) / n
    stat = float(np.max(np.abs(cur_cdf - reference_cdf)))
    return stat, ks_pvalue(stat, n_reference, int(n))
