"""Core guarantees under faults: the last line of defence, notification identity, atomic
alert state, exact float sums, reachable resolves, cheap label expiry (issue 9)."""

from __future__ import annotations

import math
import sqlite3
from collections import OrderedDict

import numpy as np
import pytest

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.daemon import misfire_grace
from driftwatch.detectors.threshold import DriftRule
from driftwatch.errors import ConfigError
from driftwatch.events import columns
from driftwatch.monitor.join import LabelJoin
from driftwatch.monitor.model import ModelMonitor
from driftwatch.sinks.outbox import Outbox
from driftwatch.sources.base import Record
from driftwatch.windows.count import CountWindow
from tests.helpers import events
from tests.unit.test_pipeline import FakeDeadLetters, config_dict, records


def drifting(n_stable: int = 600, n_drift: int = 1200) -> list[Record]:
    return records(  # type: ignore[no-any-return]
        events(1, n_stable) + events(2, n_drift, shift=("x1", "x2"), start=n_stable)
    )


# -- 2. a last line of defence ---------------------------------------------------------------
def test_an_exception_while_ingesting_one_record_dead_letters_it_and_goes_on(tmp_path, monkeypatch):
    cfg = parse_config(config_dict(tmp_path), tmp_path)
    dlq = FakeDeadLetters()
    pipe = build_pipeline(cfg, dead_letters=dlq)
    monitor = pipe.monitors["m"]
    real_bin = ModelMonitor._bin

    def poisoned(self, cols):
        if "e-7" in cols.ids:
            raise OverflowError("injected fault")
        return real_bin(self, cols)

    monkeypatch.setattr(ModelMonitor, "_bin", poisoned)
    applied = pipe.apply(records(events(1, 20)))
    assert applied == 19
    assert dlq.sent == [(7, "internal_error")]
    assert monitor.window.events == 19 and monitor.events_total == 19
    assert pipe.telemetry.snapshot().invalid_total == {"internal_error": 1}
    assert pipe.telemetry.snapshot().events_total["m"] == 19
    # the failed event left nothing behind: the same 19 events applied cleanly match
    clean = build_pipeline(cfg)
    clean.apply([r for r in records(events(1, 20)) if r.offset != 7])
    assert np.array_equal(clean.monitors["m"].window.totals, monitor.window.totals)
    assert clean.monitors["m"].missing == monitor.missing


def test_an_exception_in_the_decoder_is_an_internal_error(tmp_path, monkeypatch):
    cfg = parse_config(config_dict(tmp_path), tmp_path)
    dlq = FakeDeadLetters()
    pipe = build_pipeline(cfg, dead_letters=dlq)
    real = pipe.decoder.prediction

    def flaky(raw, ts, **kw):
        if b'"e-3"' in (raw or b""):
            raise RecursionError("injected")
        return real(raw, ts, **kw)

    monkeypatch.setattr(pipe.decoder, "prediction", flaky)
    assert pipe.apply_events(records(events(1, 10))) == 9
    assert dlq.sent == [(3, "internal_error")]


def test_a_failing_batch_decoder_falls_back_to_decoding_each_record(tmp_path, monkeypatch, caplog):
    cfg = parse_config(config_dict(tmp_path), tmp_path)
    dlq = FakeDeadLetters()
    pipe = build_pipeline(cfg, dead_letters=dlq)
    real = pipe.decoder.prediction

    def broken(*args, **kw):
        raise MemoryError("injected into the columnar decoder")

    def flaky(raw, ts, **kw):
        if b'"e-3"' in (raw or b""):
            raise RecursionError("injected")
        return real(raw, ts, **kw)

    monkeypatch.setattr(columns._Typed, "decode", broken)
    monkeypatch.setattr(columns._ModelColumns, "build", broken)
    monkeypatch.setattr(pipe.decoder, "prediction", flaky)
    assert pipe.apply(records(events(1, 10))) == 9
    assert dlq.sent == [(3, "internal_error")]
    assert pipe.monitors["m"].events_total == 9
    assert "batch decoding failed" in caplog.text and "MemoryError" in caplog.text


# -- 4. notification identity and the atomic policy/outbox step ------------------------------
def fire_ids(pipe) -> list[str]:
    out: list[str] = []
    stream = drifting()
    for k in range(0, len(stream), 200):
        pipe.apply(stream[k : k + 200])
        for _, notes in pipe.evaluate(1000.0 + k):
            out.extend(n.id for n in notes if n.type != "resolved")
    return out


def test_a_state_reset_gets_a_new_lineage_so_a_new_firing_is_never_a_delivered_id(tmp_path):
    cfg = parse_config(config_dict(tmp_path), tmp_path)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    pipe = build_pipeline(cfg, outbox)
    pipe.reset(["m"], owned=True, lineage=True)
    first = fire_ids(pipe)
    assert first, "the stream drifts: feature_drift must fire"
    for item in outbox.due(9e9):
        outbox.delivered(item.id, item.webhook)
    # the operator moves the checkpoint aside: the model starts empty for good
    pipe.reset(["m"], owned=True, lineage=True)
    second = fire_ids(pipe)
    assert second and not set(second) & set(first)
    assert {i.id for i in outbox.due(9e9)} == set(second)  # stored, so it will be sent


def test_a_restore_remembers_edges_notified_after_its_checkpoint(tmp_path):
    """Crash after a firing, before the next checkpoint: the restored replica takes the
    newer rule states stored with the notification, so it does not send it again, and a
    later new firing gets a new number (never a delivered id swallowed as a duplicate)."""
    cfg = parse_config(config_dict(tmp_path), tmp_path)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    pipe = build_pipeline(cfg, outbox)
    pipe.reset(["m"], owned=True, lineage=True)
    stable, drift = records(events(1, 1000)), drifting(0, 1000)
    pipe.apply(stable[:400])
    pipe.evaluate(1.0)
    states, alerts = pipe.capture(["m"])  # the checkpoint, before the drift fires
    pipe.apply(drift)
    fired = [n for _, notes in pipe.evaluate(2.0) for n in notes]
    pipe.apply(records(events(3, 1000), start=5000))
    resolved = [n for _, notes in pipe.evaluate(3.0) for n in notes]
    assert [n.type for n in fired] == ["drift.detected"]
    assert [n.type for n in resolved] == ["resolved"]
    for item in outbox.due(9e9):
        outbox.delivered(item.id, item.webhook)
    # kill -9; a replica restores the old checkpoint and catches up in one batch
    again = build_pipeline(cfg, outbox)
    again.restore(states, alerts)
    assert again.alerts["m"].states["feature_drift"].firings == 1  # from the outbox
    again.apply(drift + records(events(3, 1000), start=5000))
    assert [n for _, ns in again.evaluate(4.0) for n in ns] == []
    again.apply(drifting(0, 1000))  # a new drift later: firing #2, a new id, stored
    new = [n for _, ns in again.evaluate(5.0) for n in ns]
    assert [n.type for n in new] == ["drift.detected"] and new[0].id != fired[0].id
    assert [i.id for i in outbox.due(9e9)] == [new[0].id]


class BrokenOutbox(Outbox):
    fail = True

    def add_all(self, items, now, alert_state=None):
        if self.fail:
            raise sqlite3.OperationalError("database or disk is full")
        return super().add_all(items, now, alert_state)


def test_an_outbox_write_failure_rolls_the_alert_state_back(tmp_path):
    cfg = parse_config(config_dict(tmp_path), tmp_path)
    outbox = BrokenOutbox(tmp_path / "outbox.sqlite3")
    pipe = build_pipeline(cfg, outbox)
    stream = drifting()
    pipe.apply(stream)
    assert pipe.evaluate(1.0) == []  # the model's round failed: nothing notified
    assert not any(s.firing for s in pipe.alerts["m"].states.values())
    assert pipe.alerts["m"].states["feature_drift"].firings == 0
    assert pipe.telemetry.snapshot().outbox_failures == 1
    outbox.fail = False
    notes = [n for _, ns in pipe.evaluate(2.0) for n in ns]
    assert [n.type for n in notes] == ["drift.detected"]
    assert [i.id for i in outbox.due(9e9)] == [notes[0].id]


# -- 7. numeric exactness -----------------------------------------------------------------
def test_regression_error_sums_stay_exact_whatever_finite_values_arrive():
    w = CountWindow(300, nbins=4, nsums=2)
    huge = [1e308, 1e200, 3.0, 1e-300, 7.5]
    for k, value in enumerate(huge * 60):
        key = int(w.add(np.zeros((1, 1), np.int64), np.array([float(k)]))[0])
        w.add_to_pane(key, np.zeros(0, np.int64), np.array([value, value * value]))
    for _ in range(4):  # the huge ones leave the window
        w.add(np.zeros((300, 1), np.int64), np.arange(300, dtype=np.float64))
    sums = w.snapshot().sums
    assert sums.tolist() == [0.0, 0.0]
    assert not np.isnan(sums).any()


def test_error_sums_depend_only_on_what_is_in_the_window():
    """No cancellation drift: after any history, the window's sums are bit for bit those of
    a fresh window fed only the events it still holds (the old running add/subtract lost
    the small values to the 1e16 ones that had left)."""
    rng = np.random.default_rng(3)
    values = rng.choice([1e16, 1.0, -1e16, 3e-5, 2.5], size=5000).tolist()

    def feed(w: CountWindow, vals: list[float]) -> None:
        for k, v in enumerate(vals):
            key = int(w.add(np.zeros((1, 1), np.int64), np.array([float(k)]))[0])
            w.add_to_pane(key, np.zeros(0, np.int64), np.array([v, v * v]))

    w = CountWindow(1000, nbins=2, nsums=2)
    feed(w, values)
    first = w._panes[0].key * w.pane_size
    fresh = CountWindow(1000, nbins=2, nsums=2)
    feed(fresh, values[first:])
    assert fresh.events == w.events
    assert w.snapshot().sums.tolist() == fresh.snapshot().sums.tolist()
    by_pane = [math.fsum(values[i : i + 10]) for i in range(first, 5000, 10)]
    assert w.snapshot().sums[0] == pytest.approx(math.fsum(by_pane), rel=1e-12, abs=1e-3)


def test_ks_resolve_limit_is_always_reachable():
    rule = DriftRule(method="ks", threshold=0.6, resolve_ratio=0.5)
    assert rule.ks_resolve_limit < 1.0
    assert rule.numerical(1000, 0.0, 0.99, was=True) is False  # resolves
    assert rule.numerical(1000, 0.0, 0.5, was=True) is True  # still firing (hysteresis)
    tight = DriftRule(method="ks", threshold=0.01, resolve_ratio=0.5)
    assert tight.ks_resolve_limit == pytest.approx(0.02)


# -- 9. label expiry costs O(expired) ---------------------------------------------------------
class NoScan(OrderedDict[str, tuple[float | str, float]]):
    def items(self):
        raise AssertionError("expire() scanned every waiting label")

    def __iter__(self):
        raise AssertionError("expire() scanned every waiting label")


def test_label_expiry_does_not_scan_waiting_labels():
    j = LabelJoin(ttl_seconds=3600)
    for i in range(20_000):
        j.add_label(f"l{i}", "1", at=1000.0 + i * 0.1, now=1000.0 + i * 0.1)
    j.labels = NoScan(j.labels)
    assert j.expire(now=3000.0) == 0  # nothing is old enough: nothing visited
    j.labels = OrderedDict(j.labels)
    expired = j.expire(now=1000.0 + 3600 + 1000.0)
    # everything up to 1000 s of label time has expired, to within one bucket (ttl/64)
    assert 10_000 - 600 <= expired <= 10_000
    assert all(at >= 1000.0 + 1000.0 - 3600 / 64 for _, at in j.labels.values())
    assert j.dropped["late"] == expired


# -- 8. config ------------------------------------------------------------------------------
def test_misfire_grace_below_a_second_is_accepted_by_the_scheduler():
    from apscheduler.schedulers.background import BackgroundScheduler

    assert misfire_grace(0.5) == 1 and misfire_grace(30) == 30 and misfire_grace(2.1) == 3
    scheduler = BackgroundScheduler()
    scheduler.add_job(lambda: None, "interval", seconds=1, misfire_grace_time=misfire_grace(0.5))


@pytest.mark.parametrize("name", ["prediction", "label", "score"])
def test_a_feature_named_like_a_reserved_column_is_refused_clearly(tmp_path, name):
    cfg = config_dict(tmp_path)
    cfg["models"][0]["features"][name] = "numerical"
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, tmp_path)
    assert any(f"models[0].features.{name}" in p and "reserved" in p for p in err.value.problems)


# -- 6. co-partitioned topics ---------------------------------------------------------------
class FakeSource:
    def __init__(self, counts):
        self.counts = counts

    def partitions(self, topic):
        return self.counts.get(topic)

    def seek(self, topic, partition, offset):
        raise AssertionError("no checkpoint to seek to")

    def position(self, topic, partition):
        return 0


def test_label_topic_with_another_partition_count_is_a_config_error(tmp_path):
    from driftwatch.partitions import Partitions
    from driftwatch.state.checkpoint import FileStore

    d = config_dict(tmp_path)
    d["kafka"]["label_topic"] = "labels"
    pipe = build_pipeline(parse_config(d, tmp_path))
    parts = Partitions(
        pipe, FakeSource({"p": 3, "labels": 2}), FileStore(tmp_path / "cp"), "p", "labels", set()
    )
    with pytest.raises(ConfigError, match=r"kafka\.label_topic: topic labels has 2 partition"):
        parts.assigned(frozenset({("p", 0)}))
    ok = Partitions(
        pipe, FakeSource({"p": 3, "labels": 3}), FileStore(tmp_path / "cp2"), "p", "labels", set()
    )
    assert ok._ensure_count() == 3


def test_status_follows_ownership_replaced_whole(tmp_path):
    cfg = parse_config(config_dict(tmp_path), tmp_path)
    pipe = build_pipeline(cfg)
    pipe.own(["m"])
    pipe.apply(records(events(1, 300)))
    pipe.evaluate(1.0)
    before = pipe.status()
    assert before["models"]["m"]["events_total"] == 300
    pipe.own(())
    assert pipe.status()["models"] == {}
    assert isinstance(pipe.owned, frozenset)


def test_label_expiry_index_stays_bounded_by_the_waiting_labels():
    j = LabelJoin(ttl_seconds=86_400, max_pending=1000)
    for i in range(100_000):  # hostile: labels whose predictions never come
        j.add_label(f"x{i}", "1", at=2e9 + i, now=2e9 + i)
    assert len(j.labels) == 1000
    assert sum(len(v) for v in j._buckets.values()) <= 2 * 1000 + 1024 + 1


def test_a_batch_failing_after_it_changed_state_is_not_applied_twice(tmp_path, monkeypatch):
    d = config_dict(tmp_path)
    cfg = parse_config(d, tmp_path)
    dlq = FakeDeadLetters()
    pipe = build_pipeline(cfg, dead_letters=dlq)
    monitor = pipe.monitors["m"]

    def late_failure(self):
        raise RuntimeError("after the window changed")

    monkeypatch.setattr(ModelMonitor, "_forget_evicted", late_failure)
    assert pipe.apply(records(events(1, 10))) == 0
    assert monitor.window.events == 10  # applied once, never re-applied one by one
    assert [r for _, r in dlq.sent] == ["internal_error"] * 10
