"""Data quality per feature (CONTRACT section 9): every ratio exact and every mean and
quantile within its stated bound, against numpy on the raw events a window holds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch.detectors import DriftRule, QualityRule
from driftwatch.detectors.recent import RecentRule
from driftwatch.events.schema import Prediction
from driftwatch.monitor import ModelMonitor, MonitorSpec
from driftwatch.monitor.quality import (
    FeatureQuality,
    numeric_summary,
    quality_breaches,
    quantile_label,
)
from driftwatch.monitor.results import Evaluation, Hysteresis
from driftwatch.windows.reference import SUMMARY_QUANTILES, NumericalBins, ReferenceProfile

FEATURES = {"x": "numerical", "c": "categorical"}
CATEGORIES = ["a", "b", "c", "d"]
T0 = 1_790_000_000.0


# -- random references and windows --------------------------------------------------------
def reference_values(rng: np.random.Generator, shape: str) -> np.ndarray:
    """A numerical reference of one of several shapes (the fine bins differ in each)."""
    if shape == "normal":  # > 500 distinct values: ~500 quantile edges
        return rng.normal(0.0, 1.0, int(rng.integers(600, 3000)))
    if shape == "integers":  # ties; every reference value an edge
        return rng.integers(0, 20, int(rng.integers(50, 1000))).astype(float)
    if shape == "lognormal":  # skewed, wide open bins in the tail
        return rng.lognormal(0.0, 1.0, int(rng.integers(600, 2000)))
    if shape == "rounded":  # ties and many distinct values
        return np.round(rng.normal(10.0, 3.0, 2000), 1)
    if shape == "constant":  # one value: bins below, equal, above
        return np.full(int(rng.integers(1, 50)), 3.0)
    return rng.choice([1.0, 2.5], int(rng.integers(2, 100)))  # two values


def window_values(rng: np.random.Generator, ref: np.ndarray, n: int) -> np.ndarray:
    """Values like, near and beyond the reference: its own values (ties, its min and max),
    shifted and wider draws, a few far outside; NaN for missing."""
    lo, hi = float(ref.min()), float(ref.max())
    span = hi - lo or 1.0
    mix = rng.integers(0, 4, n)
    out = np.where(
        mix == 0,
        rng.choice(ref, n),
        np.where(
            mix == 1,
            rng.uniform(lo - 0.1 * span, hi + 0.1 * span, n),
            np.where(
                mix == 2, rng.choice(ref, n) + rng.normal(0, 0.01 * span, n), rng.choice(ref, n)
            ),
        ),
    )
    if rng.random() < 0.5:  # integer data: stays on the grid
        out = np.round(out)
    far = rng.random(n) < rng.choice([0.0, 0.01, 0.2])
    out[far] = rng.choice([lo - 100 * span, hi + 100 * span], int(far.sum()))
    out[rng.random(n) < rng.choice([0.0, 0.05, 0.5])] = np.nan
    return out


def window_categories(rng: np.random.Generator, n: int) -> list[str | None]:
    pool = [*CATEGORIES[:3], "new-1", "new-2", None]
    p = rng.dirichlet(np.ones(len(pool)))
    return [pool[i] for i in rng.choice(len(pool), n, p=p)]


def monitor(
    ref: np.ndarray,
    window_events: int | None = None,
    window_seconds: float | None = None,
    quality: QualityRule | None = None,
) -> ModelMonitor:
    cats = CATEGORIES[:3] * 10  # the reference's categories: a, b, c
    profile = ReferenceProfile.build({"x": ref, "c": cats}, FEATURES, "classification")
    spec = MonitorSpec(
        "m",
        "classification",
        dict(FEATURES),
        DriftRule(min_events=1, recent=RecentRule(enabled=False)),
        window_events,
        window_seconds,
        quality=quality,
    )
    return ModelMonitor(spec, profile)


def predictions(
    xs: np.ndarray, cs: list[str | None], stamps: np.ndarray, start: int = 0
) -> list[Prediction]:
    return [
        Prediction(
            "m",
            f"e-{start + i}",
            float(stamps[i]),
            {"x": None if math.isnan(x) else float(x), "c": c},
            "1",
        )
        for i, (x, c) in enumerate(zip(xs.tolist(), cs, strict=True))
    ]


def held_count(mon: ModelMonitor, n_total: int) -> np.ndarray:
    """Indices of the events a count window holds: the newest ``window.events``."""
    return np.arange(n_total - mon.window.events, n_total)


def held_time(mon: ModelMonitor, stamps: np.ndarray) -> np.ndarray:
    """Indices of the events a time window holds: those whose pane is still in it (an
    event dropped as late had its pane out of the window already, and it stays out)."""
    width = mon.window.pane_width  # type: ignore[union-attr]
    keys = {p.key for p in mon.window._panes}
    pane_of = np.floor(stamps / width).astype(np.int64)
    return np.flatnonzero(np.isin(pane_of, list(keys)))


def tolerance(x: np.ndarray) -> float:
    """Room for floating-point rounding only."""
    return 1e-9 * (1.0 + float(np.max(np.abs(x))) if x.size else 1.0)


def check_against_numpy(fq: FeatureQuality, bins: NumericalBins, ref: np.ndarray, x: np.ndarray):
    """``fq`` (feature x) against numpy on the raw held values ``x`` (NaN = missing)."""
    values = x[~np.isnan(x)]
    assert fq.events == x.size and fq.values == values.size
    if x.size:
        assert fq.missing_ratio == np.isnan(x).sum() / x.size  # exact
    else:
        assert math.isnan(fq.missing_ratio)
    lo, hi = ref.min(), ref.max()
    outside = int(((values < lo) | (values > hi)).sum())
    if values.size == 0:
        assert math.isnan(fq.out_of_range_ratio) and math.isnan(fq.mean)  # type: ignore[arg-type]
        assert all(math.isnan(v) for v in fq.quantiles.values())
        return
    assert fq.out_of_range_ratio == outside / values.size  # exact
    tol = tolerance(values)
    s = numeric_summary(bins, _slot_counts(bins, values))
    # the mean: within the bound of the values clipped to the reference range, always;
    # of the raw values when none is out of range (else the bound is infinite)
    assert abs(s.mean - np.clip(values, lo, hi).mean()) <= s.clipped_mean_error_bound + tol
    # the window's counts are those of its raw values: the same figures
    assert fq.mean == s.mean and tuple(fq.quantiles.values()) == s.quantiles
    if outside:
        assert fq.mean_error_bound == math.inf
    else:
        assert fq.mean_error_bound == s.clipped_mean_error_bound
        assert fq.mean is not None and fq.mean_error_bound is not None
        assert abs(fq.mean - values.mean()) <= fq.mean_error_bound + tol
    widths = bins.bin_bounds[1] - bins.bin_bounds[0]
    widest = float(widths[1:-1].max())  # the widest in-range bin
    for q in SUMMARY_QUANTILES:
        exact = float(np.quantile(values, q))
        est, bound = fq.quantiles[q], fq.quantile_error_bounds[q]
        if math.isinf(bound):  # a rank beyond the reference's range: no bound claimed
            order = np.sort(values)
            h = (values.size - 1) * q
            near = order[[math.floor(h), min(math.ceil(h), values.size - 1)]]
            assert ((near < lo) | (near > hi)).any()
            continue
        assert abs(est - exact) <= bound + tol, (q, est, exact, bound)
        assert bound <= widest + tol  # at most one fine bin's width


def _slot_counts(bins: NumericalBins, values: np.ndarray) -> np.ndarray:
    return np.bincount(bins.bin(values), minlength=bins.nbins)


def check_categories(fq: FeatureQuality, cs: list[str | None]):
    present = [c for c in cs if c is not None]
    assert fq.values == len(present)
    assert fq.missing_ratio == (len(cs) - len(present)) / len(cs)
    new = sum(c not in CATEGORIES[:3] for c in present)
    if present:
        assert fq.new_category_ratio == new / len(present)
    else:
        assert math.isnan(fq.new_category_ratio)  # type: ignore[arg-type]
    assert fq.mean is None and not fq.quantiles


SHAPES = ["normal", "integers", "lognormal", "rounded", "constant", "two"]


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=st.sampled_from(SHAPES))
def test_count_window_ratios_exact_and_summaries_within_bounds(seed, shape):
    rng = np.random.default_rng(seed)
    ref = reference_values(rng, shape)
    size = int(rng.integers(100, 800))
    mon = monitor(ref, window_events=size)
    n = int(rng.integers(1, 3 * size))  # from a partly filled window to several evictions
    xs, cs = window_values(rng, ref, n), window_categories(rng, n)
    stamps = T0 + np.arange(n, dtype=float)
    evs = predictions(xs, cs, stamps)
    cuts = np.sort(rng.integers(0, n, 4))
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        mon.ingest_batch(evs[a:b])
    ev = mon.evaluate(T0 + n)
    idx = held_count(mon, n)
    bins = mon.profile.features["x"]
    assert isinstance(bins, NumericalBins)
    check_against_numpy(ev.quality["x"], bins, ref, xs[idx])
    check_categories(ev.quality["c"], [cs[i] for i in idx])


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=st.sampled_from(SHAPES))
def test_time_window_with_eviction_and_late_events(seed, shape):
    rng = np.random.default_rng(seed)
    ref = reference_values(rng, shape)
    seconds = float(rng.choice([50.0, 200.0, 1000.0]))
    mon = monitor(ref, window_seconds=seconds)
    n = int(rng.integers(1, 2000))
    xs, cs = window_values(rng, ref, n), window_categories(rng, n)
    # event time moves on at a random pace, with jitter (some events arrive late)
    stamps = T0 + np.cumsum(rng.exponential(seconds / 300, n)) + rng.normal(0, seconds / 20, n)
    evs = predictions(xs, cs, stamps)
    for a in range(0, n, 97):
        mon.ingest_batch(evs[a : a + 97])
    ev = mon.evaluate(T0)
    idx = held_time(mon, stamps)
    assert idx.size == ev.window_events == mon.window.events
    bins = mon.profile.features["x"]
    assert isinstance(bins, NumericalBins)
    check_against_numpy(ev.quality["x"], bins, ref, xs[idx])
    check_categories(ev.quality["c"], [cs[i] for i in idx])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=st.sampled_from(SHAPES))
def test_reference_figures_are_exact_and_its_range_is_the_outer_edges(seed, shape):
    rng = np.random.default_rng(seed)
    ref = reference_values(rng, shape)
    ref_with_gaps = np.concatenate([ref, [np.nan, np.inf]])  # non-finite values are ignored
    bins = NumericalBins.from_reference(rng.permutation(ref_with_gaps))
    assert bins.minimum == ref.min() and bins.maximum == ref.max()
    assert bins.reference_quantiles == tuple(np.quantile(ref, SUMMARY_QUANTILES).tolist())
    assert bins.reference_mean == pytest.approx(float(np.mean(ref)), rel=1e-12, abs=1e-12)
    # summarising the reference itself: quantiles within their bounds, exact on edges
    s = numeric_summary(bins, _slot_counts(bins, ref))
    for q, est, bound in zip(SUMMARY_QUANTILES, s.quantiles, s.quantile_error_bounds, strict=True):
        assert abs(est - np.quantile(ref, q)) <= bound + tolerance(ref)
    assert abs(s.mean - ref.mean()) <= s.clipped_mean_error_bound + tolerance(ref)


def test_integer_data_the_reference_had_is_summarised_exactly():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 100, 5000).astype(float)  # 100 distinct values: each an edge
    bins = NumericalBins.from_reference(ref)
    x = rng.integers(0, 100, 777).astype(float)
    s = numeric_summary(bins, _slot_counts(bins, x))
    assert s.quantile_error_bounds == (0.0, 0.0, 0.0) and s.clipped_mean_error_bound == 0.0
    assert s.quantiles == pytest.approx(np.quantile(x, SUMMARY_QUANTILES).tolist(), abs=1e-12)
    assert s.mean == pytest.approx(x.mean(), rel=1e-12)


def test_measured_error_on_a_normal_feature_is_far_inside_the_bound():
    """The figures the README quotes: reference N(0, 1) of 10,000 values, windows of 5,000
    from N(0.3, 1.2) (a shifted and wider window, mostly in range)."""
    rng = np.random.default_rng(11)
    bins = NumericalBins.from_reference(rng.normal(0, 1, 10_000))
    worst_q, worst_bound, worst_mean, mean_bound = 0.0, 0.0, 0.0, 0.0
    for _ in range(20):
        x = np.clip(rng.normal(0.3, 1.2, 5000), bins.minimum, bins.maximum)
        s = numeric_summary(bins, _slot_counts(bins, x))
        for q, est, bound in zip(
            SUMMARY_QUANTILES, s.quantiles, s.quantile_error_bounds, strict=True
        ):
            worst_q = max(worst_q, abs(est - np.quantile(x, q)))
            worst_bound = max(worst_bound, bound)
        worst_mean = max(worst_mean, abs(s.mean - x.mean()))
        mean_bound = max(mean_bound, s.clipped_mean_error_bound)
    # in units of the reference's standard deviation (1): the bound is about one fine
    # bin (1/500 of the reference), widest in the tails; the error about a fifth of it
    assert worst_q <= worst_bound <= 0.08
    assert worst_mean <= mean_bound <= 0.02
    assert worst_q < 0.02 and worst_mean < 0.005


def test_empty_window_has_no_figures_and_json_has_nulls():
    mon = monitor(np.arange(10.0), window_events=100)
    ev = mon.evaluate(0.0)
    x = ev.quality["x"]
    assert x.events == 0 and math.isnan(x.missing_ratio) and math.isnan(x.mean)  # type: ignore[arg-type]
    d = ev.to_dict()["quality"]
    assert d["x"]["missing_ratio"] is None and d["x"]["mean"] is None
    assert d["x"]["reference"]["mean"] == 4.5
    assert d["x"]["reference"]["quantiles"] == pytest.approx(
        {"0.05": 0.45, "0.5": 4.5, "0.95": 8.55}
    )
    assert d["c"] == {
        "kind": "categorical",
        "values": 0,
        "missing_ratio": None,
        "new_category_ratio": None,
    }


def test_evaluation_json_carries_every_figure():
    ref = np.arange(100.0)
    mon = monitor(ref, window_events=1000, quality=QualityRule(max_missing_ratio=0.1, min_events=5))
    xs = np.array([1.0, 2.0, np.nan, 200.0, 50.0, np.nan, 3.0, 4.0, 5.0, 6.0])
    cs: list[str | None] = ["a", "zzz", None, "b", "a", "a", "a", "a", "a", "a"]
    mon.ingest_batch(predictions(xs, cs, T0 + np.arange(10.0)))
    out = mon.evaluate(T0).to_dict()
    x, c = out["quality"]["x"], out["quality"]["c"]
    assert x["missing_ratio"] == 0.2 and x["out_of_range_ratio"] == 1 / 8
    assert x["mean_error_bound"] is None  # a value above the reference's maximum
    assert set(x["quantiles"]) == set(x["quantile_error_bounds"]) == {"0.05", "0.5", "0.95"}
    assert x["quantiles"]["0.5"] == np.quantile([1, 2, 200, 50, 3, 4, 5, 6], 0.5)  # exact: edges
    assert c == {
        "kind": "categorical",
        "values": 9,
        "missing_ratio": 0.1,
        "new_category_ratio": 1 / 9,
    }
    assert out["breaches"]["data_quality"] is True
    assert out["quality_breaches"] == [
        {"feature": "x", "ratio": "missing_ratio", "value": 0.2, "threshold": 0.1}
    ]
    assert [quantile_label(q) for q in SUMMARY_QUANTILES] == ["0.05", "0.5", "0.95"]


# -- the rule --------------------------------------------------------------------------------
def test_quality_rule_edges_and_hysteresis():
    rule = QualityRule(
        max_missing_ratio=0.1, max_new_category_ratio=0.0, min_events=10, resolve_ratio=0.5
    )
    assert not rule.breach("missing_ratio", 0.1, 10)  # at the threshold: no breach
    assert rule.breach("missing_ratio", 0.1000001, 10)
    assert not rule.breach("missing_ratio", 0.9, 9)  # too few events: no decision
    assert not rule.breach("missing_ratio", math.nan, 100)
    assert not rule.breach("out_of_range_ratio", 1.0, 100)  # not configured
    # breaching: stays until at most max x resolve_ratio
    assert rule.breach("missing_ratio", 0.06, 10, was=True)
    assert not rule.breach("missing_ratio", 0.05, 10, was=True)
    # a zero threshold: any value breaches, and only zero resolves
    assert rule.breach("new_category_ratio", 1e-9, 10) and not rule.breach(
        "new_category_ratio", 0.0, 10, True
    )
    for bad in (
        {"max_missing_ratio": 1.5},
        {"max_out_of_range_ratio": -0.1},
        {"min_events": 0},
        {"resolve_ratio": 0.0},
    ):
        with pytest.raises(ValueError):
            QualityRule(**bad)
    with pytest.raises(ValueError, match="unknown"):
        rule.threshold("psi")


def fq(
    feature: str,
    events: int,
    values: int,
    missing: float,
    out_of_range_ratio: float | None = None,
    new_category_ratio: float | None = None,
) -> FeatureQuality:
    kind = "categorical" if out_of_range_ratio is None else "numerical"
    return FeatureQuality(
        feature, kind, events, values, missing, out_of_range_ratio, new_category_ratio
    )


def test_breaches_name_each_feature_and_ratio_with_their_support():
    rule = QualityRule(0.1, 0.05, 0.2, min_events=100)
    quality = {
        "x": fq("x", 1000, 900, 0.1, out_of_range_ratio=0.06),
        "y": fq("y", 1000, 50, 0.95, out_of_range_ratio=0.5),  # 50 values: out of range undecided
        "c": fq("c", 1000, 1000, 0.0, new_category_ratio=0.3),
    }
    got = quality_breaches(rule, quality)
    assert [(b.feature, b.ratio, b.value, b.threshold) for b in got] == [
        ("x", "out_of_range_ratio", 0.06, 0.05),
        ("y", "missing_ratio", 0.95, 0.1),
        ("c", "new_category_ratio", 0.3, 0.2),
    ]
    # hysteresis per (feature, ratio): x's missing ratio did not breach, so 0.1 stays quiet
    was = frozenset({("x", "out_of_range_ratio")})
    calmer = {"x": fq("x", 1000, 900, 0.1, out_of_range_ratio=0.04)}
    assert [
        b.key for b in quality_breaches(QualityRule(0.1, 0.05, resolve_ratio=0.5), calmer, was)
    ] == [("x", "out_of_range_ratio")]
    assert quality_breaches(QualityRule(0.1, 0.05, resolve_ratio=0.5), calmer) == ()


def test_hysteresis_round_trips_and_reads_a_checkpoint_without_quality():
    h = Hysteresis(frozenset({"x"}), True, False, True, frozenset({("x", "missing_ratio")}))
    assert Hysteresis.from_dict(h.to_dict()) == h
    old = {"drifting": ["x"], "prediction": True, "dataset": False, "performance": True}
    assert Hysteresis.from_dict(old) == Hysteresis(frozenset({"x"}), True, False, True)


def test_evaluation_without_quality_keeps_its_old_shape():
    ev = Evaluation("m", 0.0, 0, None, None, (), None, False, False)
    assert ev.breaches["data_quality"] is False and ev.hysteresis.quality == frozenset()
    assert ev.to_dict()["quality"] == {} and ev.to_dict()["quality_breaches"] == []
