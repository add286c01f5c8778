from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch import stats
from driftwatch.stats.ks import ks_from_counts
from driftwatch.windows.reference import CategoricalBins, NumericalBins, ReferenceProfile


def binned_stats(ref, cur):
    bins = NumericalBins.from_reference(ref)
    counts = np.bincount(bins.bin(np.asarray(cur, dtype=float)), minlength=bins.nbins)
    psi = stats.psi_from_counts(bins.reference_psi_counts, bins.psi_counts(counts))
    return psi, ks_from_counts(bins.reference_cdf, counts, bins.n_reference)


DISTS = ["normal", "lognormal", "integers", "mixture", "constant_mass"]


def draw(rng, kind, n, shift):
    if kind == "normal":
        return rng.normal(shift, 1, n)
    if kind == "lognormal":
        return rng.lognormal(shift, 0.8, n)
    if kind == "integers":
        return rng.integers(0, 30, n) + round(shift * 5)
    if kind == "mixture":
        return np.where(rng.random(n) < 0.3, 0.0, rng.normal(5 + shift, 2, n))
    return np.where(rng.random(n) < 0.6, 1.0, rng.exponential(3, n) + shift)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(DISTS),
    n_ref=st.integers(50, 20_000),
    n_cur=st.integers(1, 20_000),
    shift=st.floats(-1.5, 1.5),
)
def test_binned_psi_is_exact_and_ks_within_001(seed, kind, n_ref, n_cur, shift):
    rng = np.random.default_rng(seed)
    ref = draw(rng, kind, n_ref, 0.0)
    cur = draw(rng, kind, n_cur, shift)
    psi, (ks_stat, ks_p) = binned_stats(ref, cur)
    assert psi == pytest.approx(stats.psi(ref, cur), rel=1e-9, abs=1e-12)
    exact_stat, _ = stats.ks(ref, cur)
    assert abs(ks_stat - exact_stat) <= 0.01
    assert 0.0 <= ks_p <= 1.0


def test_ks_is_exact_when_reference_has_few_distinct_values():
    rng = np.random.default_rng(3)
    ref = rng.integers(18, 90, 10_000)
    cur = rng.integers(25, 95, 3_000)
    _, (stat, _) = binned_stats(ref, cur)
    assert stat == pytest.approx(stats.ks(ref, cur)[0], abs=1e-12)


def test_missing_values_bin_to_minus_one():
    bins = NumericalBins.from_reference([1.0, 2.0, 3.0])
    assert bins.bin(np.array([np.nan, 2.0])).tolist()[0] == -1
    cats = CategoricalBins.from_reference(["a", "b", None, float("nan")])
    assert cats.categories == ("a", "b")
    assert cats.bin(["a", None, "zzz"]).tolist() == [0, -1, 2]


def test_profile_layout_and_prediction_source():
    cols = {"x": np.arange(100.0), "c": ["u", "v"] * 50, "score": np.linspace(0, 1, 100)}
    prof = ReferenceProfile.build(cols, {"x": "numerical", "c": "categorical"}, "classification")
    assert prof.slots == ("x", "c", "prediction")
    assert prof.prediction_source == "score"
    assert prof.nbins == sum(prof.slot_bins(s).nbins for s in prof.slots)
    with pytest.raises(ValueError, match="'missing'"):
        ReferenceProfile.build(cols, {"missing": "numerical"}, "classification")
    with pytest.raises(ValueError, match="non-numbers"):
        ReferenceProfile.build(cols, {"c": "numerical"}, "classification")
