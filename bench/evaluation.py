"""Evaluation: 50 numerical features over a 100,000-event window, binned vs recomputed.

Side by side in one run: driftwatch's evaluation of a window snapshot (O(bins)) and
the naive approach: ``scipy.stats.ks_2samp`` + numpy PSI recomputed from the raw arrays.
"""

from __future__ import annotations

import time

import numpy as np

from driftwatch import stats
from driftwatch.detectors import DriftRule
from driftwatch.monitor import ModelMonitor, MonitorSpec
from driftwatch.windows.reference import NumericalBins, ReferenceProfile


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run(quick: bool = False) -> list[tuple[str, str, str, str]]:
    n_features, window, n_ref = 50, (20_000 if quick else 100_000), 10_000
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(n_features)]
    ref = {f: rng.normal(0, 1, n_ref) for f in names}
    cur = {f: rng.normal(0.1, 1.1, window) for f in names}
    features = dict.fromkeys(names, "numerical")
    profile = ReferenceProfile.build(ref, features, "regression")
    spec = MonitorSpec(
        "bench", "regression", features, DriftRule(min_events=1), window_events=window
    )
    monitor = ModelMonitor(spec, profile)
    # fill the window through the binning path (not timed here: that is the ingest benchmark)
    bins = np.empty((window, n_features), dtype=np.int64)
    for j, f in enumerate(names):
        slot = profile.slot_bins(f)
        assert isinstance(slot, NumericalBins)
        col = slot.bin(cur[f])
        bins[:, j] = col + profile.offsets[j]
    monitor.window.add(bins, np.zeros(window))

    def binned() -> None:
        monitor.evaluate(0.0)

    def naive() -> None:
        for f in names:
            stats.psi(ref[f], cur[f])
            stats.ks(ref[f], cur[f])

    t_binned = _best(binned, 5)
    t_naive = _best(naive, 3)
    ev = monitor.evaluate(0.0)
    max_ks_err = max(
        abs(r.ks_statistic - stats.ks(ref[r.feature], cur[r.feature])[0])
        for r in ev.features
        if r.ks_statistic is not None
    )
    speedup = t_naive / t_binned
    return [
        (
            f"evaluate {n_features} features x {window:,} events",
            "driftwatch (binned)",
            f"{t_binned * 1000:.1f} ms",
            "",
        ),
        ("", "scipy ks_2samp + numpy psi", f"{t_naive * 1000:.1f} ms", ""),
        ("", "speed-up", f"{speedup:.0f}x", ">= 20x " + ("ok" if speedup >= 20 else "MISSED")),
        (
            "",
            "max |KS binned - exact|",
            f"{max_ks_err:.4f}",
            "<= 0.01 " + ("ok" if max_ks_err <= 0.01 else "MISSED"),
        ),
    ]
