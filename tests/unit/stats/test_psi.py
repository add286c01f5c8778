from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch import stats
from driftwatch.stats.psi import PSI_EPSILON, psi_from_counts


def reference_psi(reference, current):
    """CONTRACT section 4, written out independently of the implementation."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    edges = np.unique(np.quantile(reference, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]))
    k = len(edges) + 1
    r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=k) / len(reference)
    c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=k) / len(current)
    r = np.maximum(r, 1e-4)
    c = np.maximum(c, 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


def test_psi_hand_computed_two_bins():
    # reference 0..9: deciles 0.9, 1.8, ... 8.1 -> ten bins of one value each.
    ref = np.arange(10.0)
    cur = np.array([0.0] * 5 + [9.0] * 5)
    # c = [.5, 0, ..., 0, .5] clipped to 1e-4; r = .1 everywhere.
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert stats.psi(ref, cur) == pytest.approx(expected, rel=1e-12)


def test_psi_of_identical_samples_is_zero():
    x = np.random.default_rng(0).normal(size=1000)
    assert stats.psi(x, x) == 0.0


def test_psi_outer_bins_are_open():
    ref = np.arange(100.0)
    far = np.full(50, 1e9)
    assert stats.psi(ref, far) == pytest.approx(reference_psi(ref, far))
    assert stats.psi(ref, -far) == pytest.approx(reference_psi(ref, -far))


def test_psi_from_counts_clips_and_handles_empty():
    assert math.isnan(psi_from_counts([1, 2], [0, 0]))
    v = psi_from_counts([10, 0], [0, 10])
    expected = 2 * (1 - PSI_EPSILON) * math.log(1 / PSI_EPSILON)
    assert v == pytest.approx(expected)
    with pytest.raises(ValueError):
        psi_from_counts([1, 2], [1, 2, 3])


def test_categorical_hand_computed():
    ref = ["a"] * 50 + ["b"] * 50
    cur = ["a"] * 25 + ["b"] * 25 + ["z"] * 50
    # bins a, b, unseen: r = .5 .5 0 -> 1e-4 ; c = .25 .25 .5
    expected = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert stats.psi_categorical(ref, cur) == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_ref=st.integers(20, 3000),
    n_cur=st.integers(1, 3000),
    shift=st.floats(-2, 2),
    discrete=st.booleans(),
)
def test_psi_matches_the_contract_definition(seed, n_ref, n_cur, shift, discrete):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=n_ref)
    cur = rng.normal(loc=shift, size=n_cur)
    if discrete:
        ref, cur = np.round(ref * 2), np.round(cur * 2)
    got = stats.psi(ref, cur)
    assert got == pytest.approx(reference_psi(ref, cur), rel=1e-12, abs=1e-12)
    assert got >= 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(30, 2000))
def test_ks_matches_scipy(seed, n):
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(0.2, 1.3, size=n // 2 + 1)
    stat, p = stats.ks(a, b)
    res = ks_2samp(a, b)
    assert stat == res.statistic
    assert p == res.pvalue


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(20, 30_000),
    m=st.integers(20, 30_000),
    shift=st.floats(0, 0.3),
)
def test_ks_pvalue_tracks_scipy(seed, n, m, shift):
    from scipy.stats import ks_2samp

    from driftwatch.stats.ks import ks_pvalue

    rng = np.random.default_rng(seed)
    res = ks_2samp(rng.normal(size=n), rng.normal(shift, size=m), method="asymp")
    p = ks_pvalue(res.statistic, n, m)
    if res.pvalue > 1e-3:
        assert p == pytest.approx(res.pvalue, rel=0.02, abs=1e-6)
    else:
        assert p <= 2e-3
