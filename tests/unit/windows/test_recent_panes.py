"""``PaneWindow.recent``: the newest whole panes' summaries at sizes growing by sqrt(2)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch.windows.count import CountWindow
from driftwatch.windows.panes import RECENT_GROWTH, Pane, PaneWindow
from driftwatch.windows.time import TimeWindow

Recent = tuple[tuple[int, npt.NDArray[np.float64]], ...]


def expected_recent(window: PaneWindow, min_events: int) -> list[tuple[int, list[float]]]:
    """``recent`` written out the slow way: prefix sums of the newest panes' events, and
    for each target ``min_events, ceil(t sqrt 2), ...`` the shortest prefix reaching it,
    once per distinct prefix, as long as it holds at most half the window's events."""
    newest_first = list(reversed(window._panes))
    prefix = np.cumsum([p.n for p in newest_first]).tolist()
    assert (prefix[-1] if prefix else 0) == window.events
    chosen: list[int] = []
    target = min_events
    while target < window.events:
        j = next(i for i, total in enumerate(prefix) if total >= target)
        if 2 * prefix[j] > window.events:
            break
        if j not in chosen:
            chosen.append(j)
        target = math.ceil(target * math.sqrt(2.0))
    out = []
    for j in chosen:
        dense = sum(
            (p.dense(window.nbins).astype(np.float64) for p in newest_first[: j + 1]),
            np.zeros(window.nbins),
        )
        out.append((int(prefix[j]), dense.tolist()))
    return out


def check_recent(window: PaneWindow, min_events: int) -> None:
    seen: list[int] = []

    def project(pane: Pane) -> npt.NDArray[np.float64]:
        seen.append(pane.key)
        return pane.dense(window.nbins).astype(float)

    got = window.recent(min_events, project)
    want = expected_recent(window, min_events)
    assert [(e, v.tolist()) for e, v in got] == want
    sizes = [e for e, _ in got]
    assert sizes == sorted(set(sizes))  # strictly increasing
    assert all(2 * e <= window.events for e in sizes)
    assert all(v.dtype == np.float64 for _, v in got)
    if min_events >= window.events:
        assert got == ()
    if got:
        # the newest panes, newest first, each projected once, and no more than needed
        newest_keys = [p.key for p in reversed(window._panes)]
        assert seen == newest_keys[: len(seen)]
        assert sum(p.n for p in list(reversed(window._panes))[: len(seen)]) >= sizes[-1]


def bin_rows(rng: np.random.Generator, n: int, nbins: int, width: int) -> npt.NDArray[np.int64]:
    """``n`` events of ``width`` flat bin indices each, -1 (missing) included."""
    return rng.integers(-1, nbins, size=(n, width)).astype(np.int64)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    size=st.integers(1, 3000),
    nbins=st.integers(1, 50),
    width=st.integers(1, 3),
    batches=st.lists(st.integers(0, 400), min_size=1, max_size=15),
    min_events=st.integers(1, 600),
    seed=st.integers(0, 2**32 - 1),
)
def test_count_window_recent_sums_the_newest_panes(size, nbins, width, batches, min_events, seed):
    rng = np.random.default_rng(seed)
    w = CountWindow(size, nbins)
    for b in batches:
        w.add(bin_rows(rng, b, nbins, width), np.zeros(b))
        check_recent(w, min_events)
        check_recent(w, max(1, w.events - int(rng.integers(0, 3))))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    seconds=st.floats(1.0, 1000.0),
    nbins=st.integers(1, 50),
    width=st.integers(1, 3),
    steps=st.lists(st.tuples(st.floats(0.0, 100.0), st.integers(0, 200)), min_size=1, max_size=15),
    min_events=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_time_window_recent_sums_the_newest_panes(seconds, nbins, width, steps, min_events, seed):
    rng = np.random.default_rng(seed)
    w = TimeWindow(seconds, nbins)
    t = 1_700_000_000.0
    for advance, n in steps:
        t += advance
        # out of order, some older than the window (late: dropped), some filling old panes
        ts = t - rng.uniform(0.0, seconds * 1.3, n)
        w.add(bin_rows(rng, n, nbins, width), ts)
        check_recent(w, min_events)
    assert list(w._keys) == sorted(w._keys)


def test_sizes_follow_the_sqrt2_sequence_on_unit_panes():
    # pane_size 1: every prefix is available, so the sizes are the targets themselves
    w = CountWindow(100, 3)
    w.add(np.zeros((100, 1), dtype=np.int64), np.zeros(100))
    assert w.pane_size == 1
    sizes = [e for e, _ in w.recent(10, lambda p: np.ones(1))]
    assert sizes == [10, 15, 22, 32, 46]  # then 66: over half the window
    assert math.isclose(RECENT_GROWTH, math.sqrt(2.0))
    # each summary is the sum of one projection per pane
    assert [float(v[0]) for _, v in w.recent(10, lambda p: np.ones(1))] == sizes


def test_recent_is_empty_above_half_the_window_and_checks_its_argument():
    w = CountWindow(1000, 4)
    w.add(np.ones((300, 1), dtype=np.int64), np.zeros(300))

    def project(p: Pane) -> npt.NDArray[np.float64]:
        return p.dense(4).astype(float)

    assert w.recent(300, project) == ()
    assert w.recent(10_000, project) == ()
    assert [e for e, _ in w.recent(151, project)] == []  # more than half the window
    assert [e for e, _ in w.recent(150, project)] == [150]
    assert [e for e, _ in w.recent(100, project)] == [100, 150]
    with pytest.raises(ValueError):
        w.recent(0, project)
    assert CountWindow(10, 4).recent(1, project) == ()  # an empty window


def test_snapshot_without_recent_arguments_has_no_recent():
    w = CountWindow(1000, 4)
    w.add(np.ones((800, 1), dtype=np.int64), np.zeros(800))

    def project(p: Pane) -> npt.NDArray[np.float64]:
        return p.dense(4).astype(float)

    assert w.snapshot().recent == ()
    assert w.snapshot(100).recent == ()  # a size without a projection
    assert w.snapshot(None, project).recent == ()
    with_recent = w.snapshot(100, project).recent
    assert [e for e, _ in with_recent] == [100, 150, 210, 290]  # <= 400: half of 800
    sizes = (100, 150, 210, 290)
    assert [v.tolist() for _, v in with_recent] == [[0.0, e, 0.0, 0.0] for e in sizes]
    t = TimeWindow(100.0, 4)
    t.add(np.ones((50, 1), dtype=np.int64), np.arange(50.0))
    assert t.snapshot().recent == ()
