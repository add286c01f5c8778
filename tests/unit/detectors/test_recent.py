"""The newest events' tests (``detectors.recent``) and the decisions they make in a monitor."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2, chi2_contingency, mannwhitneyu, norm

from driftwatch.detectors import DriftRule
from driftwatch.detectors.recent import RecentRule, RecentTests, chi2_limit, z_limit
from driftwatch.events.columns import PredictionColumns
from driftwatch.monitor import (
    Evaluation,
    FeatureResult,
    ModelMonitor,
    MonitorSpec,
    evaluate_snapshot,
)
from driftwatch.windows.panes import Pane
from driftwatch.windows.reference import NumericalBins, ReferenceProfile

FloatArray = npt.NDArray[np.float64]
Recent = tuple[tuple[int, FloatArray], ...]

FEATURES = {
    "normal": "numerical",
    "uniform": "numerical",
    "integer": "numerical",  # a rounded normal: heavy ties
    "category": "categorical",
}
CATEGORIES = ("a", "b", "c", "d", "e", "f")
SHARES = np.array([0.40, 0.27, 0.20, 0.10, 0.02, 0.01])  # e, f: rare
#: category ``d`` 10 % -> 25 %, the others scaled down in proportion
SHIFTED_SHARES = np.where(np.arange(6) == 3, 0.25, SHARES * 0.75 / 0.90)
TESTS = ("cells", "location", "spread")
REFERENCE_SEED = 1


def draw(rng: np.random.Generator, n: int, shift: str | None = None) -> dict[str, Any]:
    """``n`` events of the reference distributions; ``shift`` moves one of them. The same
    draws are made whatever the shift, so shifted and stationary streams pair up."""
    normal = rng.normal(0.0, 1.0, n)
    uniform = rng.uniform(0.0, 1.0, n)
    integer = np.round(rng.normal(10.0, 3.0, n))
    u = rng.random(n)
    shares = SHIFTED_SHARES if shift == "category" else SHARES
    category = np.searchsorted(np.cumsum(shares), u, side="right").clip(0, 5)
    if shift is not None and shift.startswith("mean+"):
        normal = normal + float(shift[5:])
    elif shift is not None and shift.startswith("sd*"):
        normal = normal * float(shift[3:])
    return {
        "normal": normal,
        "uniform": uniform,
        "integer": integer,
        "category": [CATEGORIES[i] for i in category.tolist()],
    }


def columns(data: Mapping[str, Any], start: int, t0: float = 1_790_000_000.0) -> PredictionColumns:
    n = len(data["category"])
    return PredictionColumns(
        "m",
        [f"e-{start + i}" for i in range(n)],
        t0 + np.arange(start, start + n, dtype=np.float64),
        np.stack([data["normal"], data["uniform"], data["integer"]]),
        [list(data["category"])],
        [],
        [0] * n,
        np.full(n, np.nan),
    )


def profile_of(rows: int = 5000, seed: int = REFERENCE_SEED) -> ReferenceProfile:
    return ReferenceProfile.build(
        draw(np.random.default_rng(seed), rows), FEATURES, "classification"
    )


def make(
    rule: DriftRule | None = None,
    window_events: int | None = 5000,
    window_seconds: float | None = None,
    profile: ReferenceProfile | None = None,
) -> ModelMonitor:
    spec = MonitorSpec(
        "m",
        "classification",
        dict(FEATURES),
        rule or DriftRule(),
        window_events,
        window_seconds,
    )
    return ModelMonitor(spec, profile or profile_of())


def flat_bins(profile: ReferenceProfile, data: Mapping[str, Any]) -> npt.NDArray[np.int64]:
    """Each event's flat bin per feature (-1: missing), as the monitor lays them out."""
    out = []
    for j, f in enumerate(profile.features):
        bins = profile.slot_bins(f)
        if isinstance(bins, NumericalBins):
            b = bins.bin(np.asarray(data[f], dtype=np.float64))
        else:
            b = bins.bin(list(data[f]))
        out.append(np.where(b >= 0, b + profile.offsets[j], -1))
    return np.stack(out, axis=1).astype(np.int64)


def as_lists(recent: Recent) -> list[tuple[int, list[float]]]:
    return [(e, v.tolist()) for e, v in recent]


def drifting(ev: Evaluation) -> dict[str, FeatureResult]:
    return {f.feature: f for f in ev.features if f.drift}


# -- pane summaries and their cache ----------------------------------------------------------


def test_sparse_and_dense_panes_give_the_same_summary():
    profile = profile_of()
    rule = RecentRule()
    nbins = profile.nbins + 1
    rng = np.random.default_rng(11)
    dense, sparse = Pane(0, nbins), Pane(0, 10**7)
    n = 0
    for size in (3, 40, 700, 1, 250, 9):  # np.add.at and bincount paths once dense
        data = draw(rng, size)
        data["normal"][: size // 3] = np.nan  # missing: counted nowhere
        data["category"][size // 2 :: 4] = [None] * len(data["category"][size // 2 :: 4])
        flat = flat_bins(profile, data)
        dense.add(flat[flat >= 0], nbins)
        sparse.add(flat[flat >= 0], 10**7)
        dense.n = sparse.n = n = n + size
    assert dense.counts is not None and sparse.counts is None
    a = RecentTests(profile, rule).project(dense)
    b = RecentTests(profile, rule).project(sparse)
    nf = len(FEATURES)
    assert a.shape == b.shape == (RecentTests(profile, rule).size,)
    assert a[:nf].tolist() == b[:nf].tolist()  # events per feature: exact
    assert a[3 * nf :].tolist() == b[3 * nf :].tolist()  # cells: exact
    assert a[nf : 3 * nf] == pytest.approx(b[nf : 3 * nf], rel=1e-12)
    # the events per feature are the non-missing values, the cells add up to them
    counts = dense.dense(nbins)
    for j in range(nf):
        assert a[j] == counts[profile.slot_slice(j)].sum()
    assert a[3 * nf :].sum() == a[:nf].sum()
    assert a[0] < n  # some normal values were missing


def test_the_cache_follows_the_pane_events_and_forgets_unseen_panes():
    profile = profile_of()
    tests = RecentTests(profile, RecentRule())
    nbins = profile.nbins + 1
    rng = np.random.default_rng(12)
    pane = Pane(7, nbins)

    def feed(p: Pane, data: Mapping[str, Any]) -> None:
        flat = flat_bins(profile, data)
        p.add(flat[flat >= 0], nbins)
        p.n += len(data["category"])

    feed(pane, draw(rng, 30))
    first = tests.project(pane).copy()
    assert tests.project(pane) is tests.project(pane)  # cached while n is unchanged
    feed(pane, draw(rng, 30, "mean+3"))  # more events in the same pane
    second = tests.project(pane)
    assert second.tolist() == RecentTests(profile, RecentRule()).project(pane).tolist()
    assert second[0] == 60 and first[0] == 30
    assert second.tolist() != first.tolist()

    # a pane read at the last snapshot is kept; one unread since is forgotten, so another
    # pane with its key and event count (a restored or reset window) is summarised anew
    other = Pane(8, nbins)
    feed(other, draw(rng, 20))
    tests.project(other)
    tests.forget_unseen()  # both read since the last call: kept
    tests.project(pane)
    tests.forget_unseen()  # ``other`` not read since: dropped
    impostor = Pane(8, nbins)
    feed(impostor, draw(rng, 20, "mean+3"))
    assert tests.project(impostor).tolist() == (
        RecentTests(profile, RecentRule()).project(impostor).tolist()
    )
    # clear() forgets everything, even panes just read
    twin = Pane(7, nbins)
    feed(twin, draw(rng, 60))
    tests.clear()
    assert tests.project(twin).tolist() == RecentTests(profile, RecentRule()).project(twin).tolist()


def test_restore_and_reset_recompute_the_summaries(monkeypatch):
    profile = profile_of()
    rng = np.random.default_rng(13)
    early, late, other = draw(rng, 3000), draw(rng, 4000), draw(rng, 4000, "mean+1")

    mon = make(profile=profile)
    mon.ingest_columns(columns(early, 0))
    meta, arrays = mon.state()
    mon.ingest_columns(columns(late, 3000))
    assert mon.snapshot().recent  # summaries of panes 60..139 cached
    mon.restore(meta, arrays)  # pane keys 60.. come again, with other events
    mon.ingest_columns(columns(other, 3000))
    got = mon.snapshot().recent

    fresh = make(profile=profile)
    fresh.restore(meta, arrays)
    fresh.ingest_columns(columns(other, 3000))
    want = fresh.snapshot().recent
    assert len(want) >= 8
    assert as_lists(got) == as_lists(want)

    # the same monitor without the clear() would read stale summaries: the check has teeth
    stale = make(profile=profile)
    stale.ingest_columns(columns(early, 0))
    stale.ingest_columns(columns(late, 3000))
    stale.snapshot()
    monkeypatch.setattr(stale.recent_tests, "clear", lambda: None)
    stale.restore(meta, arrays)
    stale.ingest_columns(columns(other, 3000))
    assert as_lists(stale.snapshot().recent) != as_lists(want)

    # reset: a fresh monitor's state, whatever was cached
    mon.reset()
    mon.ingest_columns(columns(early, 0))
    again = make(profile=profile)
    again.ingest_columns(columns(early, 0))
    assert as_lists(mon.snapshot().recent) == as_lists(again.snapshot().recent)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    batches=st.lists(st.integers(1, 700), min_size=5, max_size=25),
    snapshot_after=st.lists(st.booleans(), min_size=25, max_size=25),
)
def test_snapshots_with_the_cache_equal_a_fresh_computation(seed, batches, snapshot_after):
    """Count window: the cached summaries give what a monitor fed everything at once
    (never snapshotted before) gives. Time window, with events late and out of order
    (older panes grow): what a monitor fed the same batches without snapshots gives."""
    profile = _profile()
    rng = np.random.default_rng(seed)
    total = sum(batches)
    data = draw(rng, total, "mean+0.3")
    stamps = 1_790_000_000.0 + np.arange(total) - rng.uniform(0.0, 600.0, total)
    count, time_w, time_ref = make(profile=profile), _timed(profile), _timed(profile)
    start = 0
    for b, snap in zip(batches, snapshot_after, strict=False):
        part = {k: v[start : start + b] for k, v in data.items()}
        cols = columns(part, start)
        cols.timestamps = stamps[start : start + b]
        count.ingest_columns(cols)
        time_w.ingest_columns(cols)
        time_ref.ingest_columns(cols)
        start += b
        if snap:
            count.snapshot()
            time_w.snapshot()
    once = make(profile=profile)
    once.ingest_columns(columns(data, 0))
    assert count.window.events == once.window.events
    assert as_lists(count.snapshot().recent) == as_lists(once.snapshot().recent)
    # a second snapshot (every summary from the cache) gives the same again
    assert as_lists(count.snapshot().recent) == as_lists(once.snapshot().recent)
    assert as_lists(time_w.snapshot().recent) == as_lists(time_ref.snapshot().recent)
    assert as_lists(time_w.snapshot().recent) == as_lists(time_ref.snapshot().recent)


@cache
def _profile() -> ReferenceProfile:
    return profile_of()


def _timed(profile: ReferenceProfile) -> ModelMonitor:
    return make(window_events=None, window_seconds=3000.0, profile=profile)


# -- calibration under no drift ------------------------------------------------------------


DISTRIBUTIONS = {
    "normal": lambda rng, shape: rng.normal(0.0, 1.0, shape),
    "rounded": lambda rng, shape: np.round(rng.normal(10.0, 3.0, shape)),  # ties
}


def no_drift_statistics(
    name: str, rng: np.random.Generator, alpha: float, n: int, samples: int
) -> tuple[int, FloatArray, list[int]]:
    """One reference of 5,000 rows and ``samples`` samples of ``n`` events of the same
    distribution: the reference's degrees of freedom, each sample's X2, location z and
    spread z figured here from its summary, and what the rule decided (0: nothing, else
    1 + the index of the test in :data:`TESTS`)."""
    gen = DISTRIBUTIONS[name]
    ref = gen(rng, 5000)
    profile = ReferenceProfile.build({"x": ref}, {"x": "numerical"}, "regression")
    bins = profile.features["x"]
    assert isinstance(bins, NumericalBins)
    tests = RecentTests(profile, RecentRule(alpha=alpha, min_psi=0.0))
    whole = Pane(-1, bins.nbins)
    whole.add(bins.bin(ref), bins.nbins)
    ref_cells = tests.project(whole)[3:]  # the reference's own (pooled) cells
    if name == "normal":  # deciles: nothing pooled
        assert ref_cells.tolist() == bins.reference_psi_counts.tolist()
    big_n, df = ref_cells.sum(), int(np.count_nonzero(ref_cells)) - 1
    p = np.diff(np.concatenate([[0.0], bins.reference_cdf]))
    u = bins.reference_cdf - p / 2.0
    w = (u - p @ u) ** 2
    sorted_ref = np.sort(ref)
    values = gen(rng, (samples, n))
    fine = bins.bin(values.ravel()).reshape(samples, n)
    scale = 1.0 / n + 1.0 / big_n
    stats = np.zeros((samples, 3))
    decided = []
    for i in range(samples):
        pane = Pane(i, bins.nbins)
        pane.add(fine[i], bins.nbins)
        pane.n = n
        s = tests.project(pane)
        cells = s[3:]
        assert s[0] == n == cells.sum()
        assert s[1] == pytest.approx(u[fine[i]].sum(), rel=1e-9)
        assert s[2] == pytest.approx(w[fine[i]].sum(), rel=1e-9)
        # each event's exact mid-rank in the reference: the bins move it by under one fine
        # bin's reference mass
        ranks = (
            np.searchsorted(sorted_ref, values[i], "left")
            + np.searchsorted(sorted_ref, values[i], "right")
        ) / (2.0 * big_n)
        assert abs(s[1] / n - ranks.mean()) < 1.0 / 900
        stats[i] = (
            ((cells * big_n - ref_cells * n) ** 2 / (cells + ref_cells)).sum() / (n * big_n),
            (s[1] / n - p @ u) / math.sqrt((p @ (u - p @ u) ** 2) * scale),
            (s[2] / n - p @ w) / math.sqrt((p @ (w - p @ w) ** 2) * scale),
        )
        hit = tests.breaches(((n, s),)).get("x")
        decided.append(TESTS.index(hit.statistic) + 1 if hit else 0)
        if i < 3:  # scipy's chi-square of homogeneity and Mann-Whitney U
            table = np.stack([cells, ref_cells])[:, ref_cells > 0]
            assert stats[i, 0] == pytest.approx(chi2_contingency(table, correction=False)[0])
            mw = mannwhitneyu(values[i], ref, method="asymptotic", use_continuity=False)
            assert abs(stats[i, 1]) == pytest.approx(norm.isf(mw.pvalue / 2.0), abs=0.02)
    return df, stats, decided


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_no_drift_rejection_rates_match_alpha_and_scipy(name):
    """Samples of n = 200 events against references of 5,000 rows of the same distribution
    (20 references, 200 samples each: the tests are two-sample, calibrated over both
    draws): each test rejects at its nominal rate, its statistics are scipy's, and the
    rule decides as they say."""
    alpha, references, per_reference = 1e-2, 20, 200
    rng = np.random.default_rng(21)
    parts = [no_drift_statistics(name, rng, alpha, 200, per_reference) for _ in range(references)]
    df = np.repeat([d for d, _, _ in parts], per_reference)
    x2, zl, zs = np.concatenate([s for _, s, _ in parts]).T
    decided = [d for _, _, ds in parts for d in ds]
    z = norm.isf(alpha / 2.0)
    by_cells, by_loc, by_spread = x2 > chi2.isf(alpha, df), np.abs(zl) > z, np.abs(zs) > z
    for rejected in (by_cells, by_loc, by_spread):
        assert 0.003 <= rejected.mean() <= 0.02, rejected.mean()
    # the rule: significant by one test, first of cells / location / spread (min_psi 0:
    # no effect floor, so a location or spread breach counts even with X2 below df)
    expected = np.where(by_cells, 1, np.where(by_loc, 2, np.where(by_spread, 3, 0)))
    assert decided == expected.tolist()
    assert (expected > 0).sum() >= 20


@pytest.mark.parametrize("alpha", [0.2, 1e-2, 1e-5, 1e-8, 1e-9, 1e-12])
def test_limits_are_scipy_quantiles(alpha):
    assert z_limit(alpha) == pytest.approx(norm.isf(alpha / 2.0), rel=1e-12)
    assert 2.0 * norm.sf(z_limit(alpha)) == pytest.approx(alpha, rel=1e-9)
    for df in (1, 2, 5, 9, 30):
        assert chi2_limit(alpha, df) == pytest.approx(chi2.isf(alpha, df), rel=1e-12)
        assert chi2.sf(chi2_limit(alpha, df), df) == pytest.approx(alpha, rel=1e-9)


# -- decisions on seeded streams -----------------------------------------------------------


def first_drift(mon: ModelMonitor, rng: np.random.Generator, shift: str) -> tuple[int, Evaluation]:
    """Feed 5,000 stationary events, then shifted ones 10 at a time, evaluating after each
    batch; the number of shifted events at the first drifting evaluation, and it."""
    mon.ingest_columns(columns(draw(rng, 5000), 0))
    assert not mon.evaluate(0.0).drifted_features
    shifted = 0
    while shifted < 5000:
        mon.ingest_columns(columns(draw(rng, 10, shift), 5000 + shifted))
        shifted += 10
        ev = mon.evaluate(float(shifted))
        if ev.drifted_features:
            return shifted, ev
    raise AssertionError(f"{shift}: no drift within 5,000 shifted events")


def test_no_drift_over_200k_stationary_events():
    mon = make()
    rng = np.random.default_rng(2)
    alarms = []
    for b in range(2000):
        mon.ingest_columns(columns(draw(rng, 100), 100 * b))
        ev = mon.evaluate(float(b))
        if ev.drifted_features:
            alarms.append((b, drifting(ev)))
        if b == 1999:
            assert ev.window_events == 5000
            assert len(mon.snapshot().recent) == 10  # 100, 150, 250 ... 2300: half the window
    assert alarms == []


# (shift, the seeded outcome: shifted events at the first drifting evaluation, the target)
# The streams are seeded, so the outcomes are exact; the target is what the detector is
# for (it holds for the seed and bounds what a change of the detector may cost).
# (A *variance* x 1.5, sd x 1.22, is a smaller change than the sd x 1.5: its
# divergence over the deciles, ~0.06, is under min_psi, so it is not a target.)
SEEDED = [
    ("mean+1", 70, 100),
    ("mean+0.5", 130, 250),
    ("sd*1.5", 110, 500),
    ("category", 170, 500),
]


@pytest.mark.parametrize(("shift", "outcome", "target"), SEEDED)
def test_first_drift_on_a_seeded_stream(shift, outcome, target):
    shifted, ev = first_drift(make(), np.random.default_rng(3), shift)
    feature = "category" if shift == "category" else "normal"
    assert set(drifting(ev)) == {feature}
    hit = drifting(ev)[feature]
    assert hit.resolution is not None and hit.resolution < 500
    assert hit.resolution_test in TESTS
    assert ev.window_events >= 5000
    assert shifted == outcome
    assert shifted <= target


def test_effect_floor_keeps_a_negligible_shift_from_drifting():
    """0.1 sd over 20,000 events against 40,000 reference rows: overwhelming significance at
    the large sizes, a divergence of about 0.01, under ``min_psi``."""
    profile = profile_of(rows=40_000)
    data = draw(np.random.default_rng(4), 20_000, "mean+0.1")
    floor, no_floor = (
        make(DriftRule(recent=RecentRule(min_psi=m)), window_events=20_000, profile=profile)
        for m in (0.1, 0.0)
    )
    for start in range(0, 20_000, 1000):
        part = columns({k: v[start : start + 1000] for k, v in data.items()}, start)
        floor.ingest_columns(part)
        no_floor.ingest_columns(part)
        assert not floor.evaluate(float(start)).drifted_features
    ev = no_floor.evaluate(1.0)
    assert set(drifting(ev)) == {"normal"}
    hit = drifting(ev)["normal"]
    assert hit.resolution_test in TESTS and hit.resolution is not None
    assert 1000 < hit.resolution <= 10_000  # seen only on many events

    # the largest size, figured here: location z far beyond the limit, divergence tiny
    bins = profile.features["normal"]
    assert isinstance(bins, NumericalBins)
    snap = floor.snapshot()
    events, summary = snap.recent[-1]
    nf, big_n = len(FEATURES), bins.n_reference
    p = np.diff(np.concatenate([[0.0], bins.reference_cdf]))
    u = bins.reference_cdf - p / 2.0
    n = summary[0]
    z = (summary[nf] / n - p @ u) / math.sqrt((p @ (u - p @ u) ** 2) * (1 / n + 1 / big_n))
    assert events > 9_000 and z > 1.5 * z_limit(RecentRule().alpha)
    ref_cells = bins.reference_psi_counts.astype(np.float64)
    cells = summary[3 * nf : 3 * nf + ref_cells.size]
    x2 = (((cells * big_n - ref_cells * n) ** 2) / (cells + ref_cells)).sum() / (n * big_n)
    assert x2 > chi2_limit(RecentRule().alpha, ref_cells.size - 1)
    divergence = (x2 - (ref_cells.size - 1)) * (n + big_n) / (n * big_n)
    assert 0.0 < divergence < 0.03


def test_disabled_recent_tests_leave_the_whole_window_alone():
    enabled_at, _ = first_drift(make(), np.random.default_rng(3), "mean+1")
    off = make(DriftRule(recent=RecentRule(enabled=False)))
    disabled_at, ev = first_drift(off, np.random.default_rng(3), "mean+1")
    hit = drifting(ev)["normal"]
    assert hit.resolution_test == "window" and hit.resolution == ev.window_events
    assert off.snapshot().recent == ()
    assert disabled_at > 5 * enabled_at
    assert disabled_at >= 500


# -- the KS floor ------------------------------------------------------------------------------


def test_ks_statistic_floor():
    rule = DriftRule(method="ks", threshold=0.01, ks_min_statistic=0.1)
    assert not rule.numerical(1000, 0.5, 1e-12, False, 0.05)
    assert not rule.numerical(1000, 0.5, 1e-12, False, 0.0999)
    assert rule.numerical(1000, 0.5, 1e-12, False, 0.1)
    assert rule.numerical(1000, 0.5, 1e-12, False, 0.2)
    assert not rule.numerical(1000, 0.5, 1e-12, False, math.nan)
    assert not rule.numerical(1000, 0.5, 0.5, False, 0.9)  # still needs the p-value
    assert not rule.numerical(499, 0.5, 1e-12, False, 0.9)  # and min_events
    held = DriftRule(method="ks", threshold=0.01, ks_min_statistic=0.1, resolve_ratio=0.5)
    assert held.numerical(1000, 0.0, 1e-12, True, 0.05)  # the floor is 0.1 x 0.5
    assert not held.numerical(1000, 0.0, 1e-12, True, 0.0499)
    assert not held.numerical(1000, 0.0, 1e-12, False, 0.05)
    assert DriftRule(method="ks", ks_min_statistic=0.0).numerical(1000, 0.0, 1e-12, False, 0.0)
    with pytest.raises(ValueError):
        DriftRule(ks_min_statistic=1.0)
    with pytest.raises(ValueError):
        DriftRule(ks_min_statistic=-0.1)


def test_ks_floor_in_a_monitor():
    """A 0.1 sd shift over a full 5,000-event window: KS p-value tiny, statistic ~0.04."""
    results = {}
    for floor in (0.1, 0.0):
        rule = DriftRule(
            method="ks", threshold=0.01, ks_min_statistic=floor, recent=RecentRule(enabled=False)
        )
        mon = make(rule, profile=profile_of(rows=40_000))
        mon.ingest_columns(columns(draw(np.random.default_rng(6), 5000, "mean+0.1"), 0))
        results[floor] = {f.feature: f for f in mon.evaluate(0.0).features}
    normal = results[0.1]["normal"]
    assert normal.ks_pvalue is not None and normal.ks_pvalue < 1e-4
    assert normal.ks_statistic is not None and normal.ks_statistic < 0.1
    assert not normal.drift
    assert results[0.0]["normal"].drift


# -- results -------------------------------------------------------------------------------


def test_feature_result_dict_carries_the_resolution():
    _, ev = first_drift(make(), np.random.default_rng(3), "mean+1")
    by = {f.feature: f.to_dict() for f in ev.features}
    hit = drifting(ev)["normal"]
    assert by["normal"]["drift"] is True
    assert by["normal"]["resolution"] == {"events": hit.resolution, "test": hit.resolution_test}
    assert isinstance(by["normal"]["resolution"]["events"], int)
    for f in ("uniform", "integer", "category"):
        assert by[f]["drift"] is False and by[f]["resolution"] is None
    whole = FeatureResult("x", "numerical", 0.5, 0.3, 1e-9, True, 1e-9, 5000, "window")
    assert whole.to_dict()["resolution"] == {"events": 5000, "test": "window"}
    quiet = FeatureResult("x", "categorical", 0.01, None, None, False)
    assert quiet.to_dict()["resolution"] is None
    assert ev.to_dict()["features"][0]["resolution"] == by["normal"]["resolution"]
    from driftwatch.detectors.policy import Edge
    from driftwatch.monitor.notify import notification

    body = notification(ev, "feature_drift", Edge.FIRED, 1).body
    assert [(d["feature"], d["resolution"]) for d in body["drifted_features"]] == [
        ("normal", by["normal"]["resolution"])
    ]


# -- robustness ----------------------------------------------------------------------------


@cache
def _tests(min_psi: float) -> RecentTests:
    return RecentTests(_profile(), RecentRule(min_psi=min_psi))


_value = st.one_of(
    st.sampled_from([0.0, 1.0, 99.0, 100.0, 1e6, 2.0**31, 2.0**53]),
    st.floats(0.0, 2.0**53),
    st.integers(0, 10**4).map(float),
)


@st.composite
def summaries(draw_: st.DrawFn) -> Recent:
    size = _tests(0.1).size
    sizes = sorted(set(draw_(st.lists(st.integers(1, 10**9), min_size=1, max_size=5))))
    out = []
    for events in sizes:
        if draw_(st.booleans()):  # arbitrary figures
            s = np.array(draw_(st.lists(_value, min_size=size, max_size=size)))
        else:  # a pane's own figures, with every count scaled up
            nf = len(FEATURES)
            ncells = size - 3 * nf
            cells = np.array(draw_(st.lists(_value, min_size=ncells, max_size=ncells)))
            s = np.zeros(size)
            s[3 * nf :] = cells
            t = _tests(0.1)
            for j in range(nf):
                s[j] = cells[t._cell_feat == j].sum()
            s[nf : 2 * nf] = s[:nf] * draw_(st.floats(0.0, 1.0))
            s[2 * nf : 3 * nf] = s[:nf] * draw_(st.floats(0.0, 0.25))
        out.append((events, s))
    return tuple(out)


# subnormal event counts overflow 1 / n inside the tests (masked: under min_events)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    recent=summaries(),
    was=st.frozensets(st.sampled_from([*FEATURES, "nope"])),
    ratio=st.floats(0.01, 1.0),
    min_psi=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_breaches_are_finite_and_of_the_model(recent, was, ratio, min_psi):
    tests = _tests(min_psi)
    out = tests.breaches(recent, was, ratio)
    assert set(out) <= set(FEATURES)
    sizes = [e for e, _ in recent]
    for f, b in out.items():
        assert b.events in sizes
        assert b.statistic in TESTS
        assert math.isfinite(b.divergence) and math.isfinite(b.value)
        assert b.divergence >= min_psi * (ratio if f in was else 1.0)
        assert b.value > 0
        # the smallest breaching size: no smaller one breaches on its own
        alone = [tests.breaches(((e, s),), was, ratio).get(f) for e, s in recent]
        assert b == next(x for x in alone if x is not None)
    assert tests.breaches((), was, ratio) == {}


# -- regressions from the adversarial review -----------------------------------------------


def _monitor(features: dict[str, str], reference: dict[str, Any], rule: DriftRule | None = None):
    profile = ReferenceProfile.build(reference, features, "classification")
    spec = MonitorSpec("m", "classification", features, rule or DriftRule(), window_events=5000)
    return ModelMonitor(spec, profile)


def _feed(mon, numerical: list[Any], categorical: list[list[str | None]], start: int) -> None:
    n = len(numerical[0]) if numerical else len(categorical[0])
    mon.ingest_columns(
        PredictionColumns(
            "m",
            [f"e{start + i}" for i in range(n)],
            1.79e9 + np.arange(start, start + n, dtype=np.float64),
            np.array(numerical, dtype=np.float64).reshape(len(numerical), n),
            categorical,
            [],
            [0] * n,
            np.full(n, np.nan),
        )
    )


def test_a_dominant_category_with_a_rare_one_raises_no_false_alarm():
    """99.9 % "a", 0.1 % "b": the rare cell expects 0.1 event at 100 events, so it is pooled
    (it was once a cell of its own: X2 ~ 1/0.001 whenever a "b" arrived)."""
    rng = np.random.default_rng(0)

    def flags(n: int) -> list[str | None]:
        return [str(v) for v in np.where(rng.random(n) < 0.001, "b", "a")]

    mon = _monitor({"flag": "categorical"}, {"flag": flags(10_000)})
    _feed(mon, [], [flags(5000)], 0)
    prev = None
    for k in range(600):  # 60,000 events, evaluated every 100
        _feed(mon, [], [flags(100)], 5000 + 100 * k)
        ev = evaluate_snapshot(mon, mon.snapshot(), 0.0, prev)
        prev = ev.hysteresis
        assert not ev.drifted_features, (k, ev.features[0])


def test_one_unseen_value_against_a_single_category_reference_is_not_drift():
    mon = _monitor({"country": "categorical"}, {"country": ["US"] * 10_000})
    values: list[str | None] = ["US"] * 5000
    values[-1] = "CA"
    _feed(mon, [], [values], 0)
    assert not mon.evaluate(0.0).drifted_features


def test_zero_inflated_feature_shift_is_found_by_location_without_cells():
    """Poisson(0.1): the deciles collapse to one cell, so only location and spread can see
    a shift to Poisson(2) (the whole-window PSI stays 0)."""
    rng = np.random.default_rng(0)
    mon = _monitor({"x": "numerical"}, {"x": rng.poisson(0.1, 5000).astype(float)})
    assert not mon.recent_tests._has_cells[0]
    _feed(mon, [rng.poisson(0.1, 5000).astype(float).tolist()], [], 0)
    _feed(mon, [rng.poisson(2.0, 150).astype(float).tolist()], [], 5000)
    f = mon.evaluate(0.0).features[0]
    assert f.psi == pytest.approx(0.0, abs=1e-9)
    assert f.drift and f.resolution_test in ("location", "spread") and f.resolution <= 150


def test_high_cardinality_categorical_keeps_a_cells_test():
    """25 categories at 4 % each: none expects 5 events at 100, so they are pooled in
    buckets (not into one cell, which turned the test off); one category 4 % -> 60 %."""
    rng = np.random.default_rng(0)
    cats = [f"k{i:02d}" for i in range(25)]
    mon = _monitor({"c": "categorical"}, {"c": rng.choice(cats, 10_000).tolist()})
    assert mon.recent_tests._has_cells[0]
    _feed(mon, [], [rng.choice(cats, 5000).tolist()], 0)
    prev, seen = None, 0
    while seen < 3000:
        batch = np.where(rng.random(10) < 0.6, "k00", rng.choice(cats, 10)).tolist()
        _feed(mon, [], [batch], 5000 + seen)
        seen += 10
        ev = evaluate_snapshot(mon, mon.snapshot(), 0.0, prev)
        prev = ev.hysteresis
        if ev.drifted_features:
            break
    assert ev.drifted_features and seen <= 200, seen


def test_the_effect_floor_follows_the_drift_threshold():
    assert DriftRule().recent_floors() == (0.1, 0.1)
    assert DriftRule(threshold=0.3, categorical_threshold=0.4).recent_floors() == (0.15, 0.2)
    assert DriftRule(method="ks", threshold=0.01).recent_floors() == (0.1, 0.1)
    rng = np.random.default_rng(5)
    ref = {"x": rng.normal(size=5000)}
    shifted = (rng.normal(size=2500) + 0.6).tolist()  # PSI ~0.35 once the window is full
    for threshold, expect in ((0.2, True), (1.5, False)):  # floors 0.1 and 0.75
        mon = _monitor({"x": "numerical"}, ref, DriftRule(threshold=threshold))
        _feed(mon, [rng.normal(size=5000).tolist()], [], 0)
        _feed(mon, [shifted], [], 5000)
        f = mon.evaluate(0.0).features[0]
        assert f.drift is expect, (threshold, f)


def test_pooling_leaves_every_cell_expecting_five_events():
    from driftwatch.detectors.recent import MIN_EXPECTED, _pool

    rng = np.random.default_rng(9)
    for _ in range(200):
        k = int(rng.integers(1, 30))
        ref = np.floor(rng.pareto(1.0, k) * 10).astype(np.float64)
        ref[rng.random(k) < 0.2] = 0.0
        if ref.sum() == 0:
            continue
        small = int(rng.integers(10, 500))
        cell = _pool(ref, small)
        expected = np.bincount(cell, weights=ref / ref.sum() * small)
        assert cell.min() == 0 and set(cell.tolist()) == set(range(cell.max() + 1))
        if cell.max() >= 1:
            assert expected.min() >= MIN_EXPECTED - 1e-9, (ref, small, expected)
