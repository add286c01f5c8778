from __future__ import annotations

import pytest

from driftwatch.monitor.join import Awaiting, LabelJoin


def waiting(pane=0, ts=100.0):
    return Awaiting(pane, "1", 0.9, ts, (0,))


def test_prediction_then_label():
    j = LabelJoin(ttl_seconds=60)
    assert j.add_prediction("a", waiting()) is None
    joined = j.add_label("a", "0", at=130.0, now=130.0)
    assert joined is not None and joined.label == "0" and joined.delay_seconds == 30.0


def test_label_before_prediction_waits_then_joins():
    j = LabelJoin(ttl_seconds=60)
    assert j.add_label("a", "1", at=90.0, now=90.0) is None
    assert list(j.labels) == ["a"]
    joined = j.add_prediction("a", waiting(ts=100.0))
    assert joined is not None and joined.delay_seconds == -10.0
    assert not j.labels


def test_duplicate_labels_count_once():
    j = LabelJoin()
    j.add_prediction("a", waiting())
    assert j.add_label("a", "1", 101.0, 101.0) is not None
    assert j.add_label("a", "1", 102.0, 102.0) is None
    assert j.add_label("b", "1", 102.0, 102.0) is None
    assert j.add_label("b", "0", 103.0, 103.0) is None
    assert j.dropped == {"duplicate": 2}


def test_waiting_labels_expire_after_the_ttl():
    j = LabelJoin(ttl_seconds=60)
    j.add_label("a", "1", at=100.0, now=100.0)
    j.add_label("b", "1", at=150.0, now=150.0)
    assert j.expire(now=170.0) == 1
    assert list(j.labels) == ["b"]
    assert j.add_label("c", "1", at=10.0, now=170.0) is None  # already too old on arrival
    assert j.dropped["late"] == 2


def test_cap_evicts_the_oldest_waiting_label():
    j = LabelJoin(max_pending=2)
    for i in range(5):
        j.add_label(str(i), "1", 100.0 + i, 100.0 + i)
    assert list(j.labels) == ["3", "4"]
    assert j.dropped["capacity"] == 3


def test_predictions_leaving_the_window_are_forgotten():
    j = LabelJoin()
    j.add_prediction("a", waiting(pane=1))
    j.add_prediction("b", waiting(pane=2))
    j.forget_panes([1])
    assert set(j.predictions) == {"b"}
    assert j.add_label("a", "1", 100.0, 100.0) is None  # its prediction is gone: late
    assert j.dropped["late"] == 1 and not j.labels
    assert j.add_label("zz", "1", 100.0, 100.0) is None  # never seen: waits for the TTL
    assert list(j.labels) == ["zz"]


def test_arguments_checked():
    with pytest.raises(ValueError):
        LabelJoin(ttl_seconds=0)
    with pytest.raises(ValueError):
        LabelJoin(max_pending=0)
