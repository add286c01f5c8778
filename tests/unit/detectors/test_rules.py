from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch.detectors import DriftRule, PerformanceRule
from driftwatch.detectors.threshold import adjust_pvalues


def bh_reference(p):
    """Benjamini-Hochberg adjusted p-values, written out the slow way."""
    m = len(p)
    out = []
    for i in range(m):
        rank = sorted(p).index(p[i]) + 1
        candidates = [min(1.0, q * m / (sorted(p).index(q) + 1)) for q in p if q >= p[i]]
        out.append(min(candidates) if candidates else min(1.0, p[i] * m / rank))
    return out


def test_bonferroni_and_fdr_by_hand():
    p = [0.01, 0.04, 0.03, 0.2]
    assert adjust_pvalues(p, "none") == p
    assert adjust_pvalues(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.8])
    # BH: sorted 0.01 0.03 0.04 0.2 -> 0.04, 0.06, 0.0533.., 0.2 -> monotone from the top
    assert adjust_pvalues(p, "fdr") == pytest.approx([0.04, 0.05333333, 0.05333333, 0.2])
    assert adjust_pvalues([float("nan"), 0.01], "bonferroni")[1] == pytest.approx(0.01)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1e-12, 1.0), min_size=1, max_size=30, unique=True))
def test_fdr_matches_the_definition(p):
    assert adjust_pvalues(p, "fdr") == pytest.approx(bh_reference(p))
    assert all(a >= b - 1e-12 for a, b in zip(adjust_pvalues(p, "fdr"), p, strict=True))


def test_psi_hysteresis_resolves_below_threshold_times_ratio():
    rule = DriftRule("psi", 0.2, min_events=1, resolve_ratio=0.5)
    assert not rule.numerical(10, 0.15, 1.0, was=False)  # not yet drifting: needs 0.2
    assert rule.numerical(10, 0.15, 1.0, was=True)  # drifting: holds down to 0.1
    assert not rule.numerical(10, 0.099, 1.0, was=True)
    assert rule.categorical(10, 0.11, was=True) and not rule.categorical(10, 0.11)
    assert rule.prediction(10, 0.11, was=True) and not rule.prediction(10, 0.11)


def test_ks_hysteresis_on_pvalues_and_dataset_share():
    rule = DriftRule("ks", 0.05, min_events=1, resolve_ratio=0.5, share=0.5)
    assert rule.numerical(10, 0.0, 0.04) and not rule.numerical(10, 0.0, 0.07)
    assert rule.numerical(10, 0.0, 0.07, was=True) and not rule.numerical(10, 0.0, 0.11, was=True)
    assert rule.dataset(10, 0.5) and not rule.dataset(10, 0.4)
    assert rule.dataset(10, 0.3, was=True) and not rule.dataset(10, 0.2, was=True)
    assert not rule.dataset(0, 1.0)


def test_performance_hysteresis_and_direction():
    acc = PerformanceRule("accuracy", max_drop=0.1, min_labels=5, resolve_ratio=0.5)
    assert acc.breach(5, 0.79, 0.9) and not acc.breach(5, 0.81, 0.9)
    assert acc.breach(5, 0.84, 0.9, was=True) and not acc.breach(5, 0.86, 0.9, was=True)
    assert not acc.breach(4, 0.1, 0.9)
    mae = PerformanceRule("mae", max_drop=0.1, min_labels=1, lower_is_better=True)
    assert mae.breach(1, 0.61, 0.5) and not mae.breach(1, 0.59, 0.5)


def test_fdr_controls_false_alarms_on_many_null_features():
    """50 features, none drifting, KS p-values uniform: uncorrected, p < 0.05 flags ~2.5 of
    them; FDR-adjusted, almost never one."""
    rng = np.random.default_rng(0)
    raw_alarms = fdr_alarms = 0
    for _ in range(200):
        p = rng.random(50).tolist()
        raw_alarms += sum(x < 0.05 for x in p)
        fdr_alarms += sum(x < 0.05 for x in adjust_pvalues(p, "fdr"))
    assert raw_alarms > 400 and fdr_alarms < 30  # expected: 500 uncorrected
