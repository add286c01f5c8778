"""The KS p-value computed for many statistics at once equals one at a time."""

from __future__ import annotations

import numpy as np


def test_vectorised_pvalues_equal_one_at_a_time():
    from driftwatch.stats.ks import ks_pvalue, ks_pvalues

    rng = np.random.default_rng(4)
    stats = np.concatenate([rng.random(200), [0.0, 1.0, np.nan]])
    n_ref = rng.integers(0, 5000, stats.size)
    n_cur = rng.integers(0, 5000, stats.size)
    n_cur[:20] = rng.integers(1, 30, 20)  # small windows: the exact distribution
    n_ref[5] = 0
    got = ks_pvalues(stats, n_ref, n_cur)
    want = [
        ks_pvalue(float(s), int(a), int(b)) for s, a, b in zip(stats, n_ref, n_cur, strict=True)
    ]
    np.testing.assert_array_equal(got, np.array(want))
