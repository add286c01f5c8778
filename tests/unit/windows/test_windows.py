from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch.windows.count import CountWindow
from driftwatch.windows.time import TimeWindow

NBINS = 7


def rows(values):
    return np.asarray(values, dtype=np.int64).reshape(-1, 1)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 500),
    batches=st.lists(st.integers(0, 300), min_size=1, max_size=20),
    seed=st.integers(0, 1000),
)
def test_count_window_holds_the_newest_n_within_one_percent(size, batches, seed):
    rng = np.random.default_rng(seed)
    w = CountWindow(size, NBINS)
    stream = []
    for b in batches:
        vals = rng.integers(-1, NBINS, b)  # -1: a missing value, not counted in any bin
        stream.extend(vals.tolist())
        w.add(rows(vals), np.zeros(b))
        seen = len(stream)
        assert w.events <= seen
        assert w.events >= min(seen, size)
        assert w.events < size + w.pane_size or w.events == seen
        assert w.events <= size * 1.01 or (w.pane_size == 1 and w.events <= size)
        held = np.asarray(stream[seen - w.events :], dtype=np.int64)
        expected = np.bincount(held[held >= 0], minlength=NBINS)
        assert w.totals.tolist() == expected.tolist()


def test_count_window_exact_size_when_panes_divide():
    w = CountWindow(1000, NBINS)
    for _ in range(30):
        w.add(rows(np.zeros(97, dtype=int)), np.zeros(97))
    assert w.pane_size == 10
    assert 1000 <= w.events < 1010
    assert w.pane_count <= 101


@settings(max_examples=60, deadline=None)
@given(
    seconds=st.floats(1, 1000),
    steps=st.lists(st.tuples(st.floats(0, 50), st.integers(1, 50)), min_size=1, max_size=30),
    seed=st.integers(0, 1000),
)
def test_time_window_holds_events_within_s_of_newest(seconds, steps, seed):
    rng = np.random.default_rng(seed)
    w = TimeWindow(seconds, NBINS)
    t = 1_700_000_000.0
    kept_ts, kept_bins = [], []
    for advance, n in steps:
        t += advance
        ts = t - rng.uniform(0, seconds * 0.5, n)  # a little out of order
        vals = rng.integers(0, NBINS, n)
        w.add(rows(vals), ts)
        kept_ts.extend(ts.tolist())
        kept_bins.extend(vals.tolist())
        newest = max(kept_ts)
        tsa, va = np.asarray(kept_ts), np.asarray(kept_bins)
        inside = tsa > newest - seconds
        maybe = tsa > newest - seconds - seconds / 100 - 1e-9
        assert w.totals.sum() == w.events
        # everything strictly within S is held, nothing older than S + S/100 is
        assert int(inside.sum()) <= w.events <= int(maybe.sum())
        held = np.bincount(va[maybe], minlength=NBINS)
        assert np.all(w.totals <= held)


def test_time_window_drops_late_events():
    w = TimeWindow(100.0, NBINS)
    w.add(rows([1, 2]), np.array([1000.0, 1001.0]))
    keys = w.add(rows([3]), np.array([800.0]))
    assert keys.tolist() == [-1]
    assert w.late_events == 1
    assert w.events == 2
    w.add(rows([3]), np.array([1200.0]))
    assert w.events == 1  # the first two are more than 100 s older than the newest


def test_window_arguments_are_checked():
    with pytest.raises(ValueError):
        CountWindow(0, 3)
    with pytest.raises(ValueError):
        TimeWindow(0, 3)
