"""``driftwatch backtest``: change points, the scoring (a pure function, on hand-made
evaluation sequences), the no-skill baseline, and the command end to end.

What the detector decides (when it breaches) may change; the tests assert exact figures
only where the scoring determines them from the recorded evaluations, and bounds where
they depend on the detector."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from driftwatch.app import build_pipeline
from driftwatch.backtest import (
    Change,
    Detection,
    Recorded,
    Step,
    backtest,
    baseline,
    find_changes,
    format_table,
    read_change_ids,
    rising_edges,
    score,
    steps,
)
from driftwatch.cli import main
from driftwatch.config import parse_config
from driftwatch.errors import DriftwatchError
from driftwatch.replay import replay
from driftwatch.sources.base import Record
from tests.helpers import FEATURES, events, reference_frame

NOW = 1_795_392_000.0  # the wall clock given to in-process backtests
T0 = 1_790_000_000.0  # helpers.events' first timestamp
INTERVAL = 100  # one evaluation per 100 events: the histories have one event a second


# -- scoring, on hand-made sequences --------------------------------------------------------
def seq(firing: str, every: int = 100, t0: float = 0.0) -> list[Step]:
    """Steps from a string of breaches ('.' no, 'X' yes), one evaluation every ``every``
    events and ``every`` seconds (the k-th has seen (k+1) * every events)."""
    return steps(((k + 1) * every, t0 + (k + 1) * every, c == "X") for k, c in enumerate(firing))


def test_rising_edges():
    assert rising_edges([]) == []
    assert rising_edges([True, True, False, True, False, False, True]) == [
        True,
        False,
        False,
        True,
        False,
        False,
        True,
    ]


def test_score_alarms_are_rising_edges_and_without_changes_all_false():
    f = score(seq(".XX.X..XXX"), [])
    assert (f.evaluations, f.alarms, f.false_alarms, f.changes, f.missed) == (10, 3, 3, 0, 0)
    assert f.detections == ()
    assert f.mean_delay_events is None and f.max_delay_seconds is None
    assert f.to_dict()["mean_delay_events"] is None


def test_score_the_first_alarm_after_the_change_detects_it():
    # evaluations have seen 100, 200, ... events; the change is event 250 (at 240 s)
    f = score(seq("....XXX..."), [Change(250, 240.0, "c")])
    assert f.detections == (Detection(0, 4, 500 - 250, 500 - 240.0),)
    assert (f.alarms, f.false_alarms, f.missed) == (1, 0, 0)
    assert (f.mean_delay_events, f.max_delay_events) == (250, 250)
    assert (f.mean_delay_seconds, f.max_delay_seconds) == (260.0, 260.0)


def test_score_an_evaluation_at_the_change_index_has_not_seen_it():
    # the change is event 300: the evaluation at 300 events has seen events 0..299 only
    f = score(seq("..XXXX"), [Change(300, 300.0)])
    assert f.detections == (Detection(0, 3, 100, 100.0),)  # already firing at 400
    assert (f.alarms, f.false_alarms) == (1, 1)  # the alarm at 300 came before it


def test_score_already_firing_at_the_change_needs_no_new_alarm():
    f = score(seq(".XXXXXX..."), [Change(350, 350.0)])
    assert f.detections == (Detection(0, 3, 50, 50.0),)
    # the rule's one alarm (at 200 events) was raised before the change: false
    assert (f.alarms, f.false_alarms, f.missed) == (1, 1, 0)


def test_score_alarms_before_the_change_and_after_its_detection_are_false():
    f = score(seq(".X...X.X.X"), [Change(400, 400.0)])
    assert f.detections == (Detection(0, 5, 200, 200.0),)
    assert (f.alarms, f.false_alarms, f.missed) == (4, 3, 0)


def test_score_an_alarm_counts_for_the_segment_it_saw():
    # changes at 200 and 500: the alarm at 600 events has seen the second one
    f = score(seq(".....X...."), [Change(500, 500.0, "b"), Change(200, 200.0, "a")])
    assert f.changes == 2
    assert f.detections == (Detection(1, 5, 100, 100.0),)
    assert (f.alarms, f.false_alarms, f.missed) == (1, 0, 1)


def test_score_two_changes_between_evaluations_the_first_is_missed():
    f = score(seq("..XXX"), [Change(210, 210.0), Change(250, 250.0)])
    assert f.detections == (Detection(1, 2, 50, 50.0),)
    assert (f.alarms, f.false_alarms, f.missed) == (1, 0, 1)


def test_score_one_change_per_index_and_none_after_the_last_evaluation():
    f = score(seq("..X"), [Change(100, 100.0, "a"), Change(100, 105.0, "b"), Change(300, 1.0)])
    assert f.changes == 2
    assert f.detections == (Detection(0, 2, 200, 200.0),)
    assert f.missed == 1  # no evaluation has seen event 300


def test_baseline_fires_at_the_detector_rate():
    detector = seq("X.X.X.....")  # 3 alarms in 10 evaluations: r = 0.3
    fired = [k for k, s in enumerate(baseline(detector)) if s.alarm]
    assert fired == [3, 6, 9]  # floor((k+1) 0.3) > floor(k 0.3)
    assert all(s.firing == s.alarm for s in baseline(detector))
    assert [(s.events, s.at) for s in baseline(detector)] == [(s.events, s.at) for s in detector]
    assert not any(s.alarm for s in baseline(seq("....")))
    assert baseline([]) == []
    # two alarms in three evaluations: consecutive pulses, each one an alarm
    pulses = baseline(seq("X.X"))
    assert [s.alarm for s in pulses] == [False, True, True]
    assert score(pulses, []).alarms == 2


# -- change points -----------------------------------------------------------------------------
def test_read_change_ids(tmp_path):
    path = tmp_path / "changes"
    path.write_text("e-1\n\n  e-2  \r\n\ne-3")
    assert read_change_ids(path) == ["e-1", "e-2", "e-3"]
    path.write_text('\n ["e-1", 42, "e-3"]\n')
    assert read_change_ids(path) == ["e-1", "42", "e-3"]
    path.write_text("")
    assert read_change_ids(path) == []
    for bad in ('["e-1", true]', '["e-1", {"id": 1}]', "[not json"):
        path.write_text(bad)
        with pytest.raises(DriftwatchError, match="--changes"):
            read_change_ids(path)


def doc(tmp_path: Path, window: int = 1000) -> dict[str, Any]:
    reference_frame().to_csv(tmp_path / "ref.csv", index=False)
    return {
        "kafka": {"bootstrap_servers": ["127.0.0.1:1"], "prediction_topic": "p"},
        "evaluation": {"interval_seconds": INTERVAL},
        "models": [
            {
                "name": "m",
                "reference": "ref.csv",
                "window": {"events": window},
                "features": dict(FEATURES),
                "drift": {"threshold": 0.2, "min_events": 200},
            }
        ],
    }


def config(tmp_path: Path, window: int = 1000):
    return parse_config(doc(tmp_path, window), tmp_path)


def records(lines: list[bytes]) -> list[Record]:
    return [Record("replay", 0, i, None, line, 0.0) for i, line in enumerate(lines)]


def dumps(evs: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(e).encode() for e in evs]


def test_find_changes_counts_valid_predictions_only(tmp_path):
    decoder = build_pipeline(config(tmp_path)).decoder
    decoder.clock = lambda: NOW
    evs = events(1, 7)
    untimed = {k: v for k, v in evs[0].items() if k != "timestamp"}
    lines = [
        json.dumps({**untimed, "change": True}).encode(),  # index 0, takes the first time
        b"garbage",
        json.dumps({**evs[1], "features": {**evs[1]["features"], "x1": "?"}, "id": "x"}).encode(),
        json.dumps(evs[1]).encode(),
        json.dumps({"model": "m", "id": "e-1", "label": 1, "timestamp": T0 + 1.5}).encode(),
        json.dumps({**evs[2], "change": True}).encode(),  # index 2
        json.dumps({**evs[3], "change": False}).encode(),
        json.dumps(evs[4]).encode(),  # index 4: listed
        json.dumps({**evs[5], "change": "true"}).encode(),  # not the JSON true
        # index 6: a byte-order mark, and the key spelt with an escape
        b"\xef\xbb\xbf"
        + json.dumps({**evs[6], "change": True}).encode().replace(b'"c', b'"\\u0063'),
    ]
    scan = find_changes(decoder, records(lines), {"e-4", "x", "e-404"}, started=NOW)
    assert scan.changes == {
        "m": [
            Change(0, T0 + 1, "e-0"),
            Change(2, T0 + 2, "e-2"),
            Change(4, T0 + 4, "e-4"),
            Change(6, T0 + 6, "e-6"),
        ]
    }
    assert scan.matched == {"e-4"}  # "x" is an invalid event


def test_find_changes_without_any_timestamp_takes_the_wall_clock(tmp_path):
    decoder = build_pipeline(config(tmp_path)).decoder
    decoder.clock = lambda: NOW
    evs = [{k: v for k, v in e.items() if k != "timestamp"} for e in events(1, 5)]
    evs[3]["change"] = True
    scan = find_changes(decoder, records(dumps(evs)), started=NOW)
    assert scan.changes == {"m": [Change(3, NOW, "e-3")]}


def test_a_change_key_leaves_the_replay_unchanged(tmp_path):
    cfg = config(tmp_path)
    evs = events(1, 600) + events(2, 600, shift=("x1",), start=600)
    plain: list[dict[str, Any]] = []
    flagged: list[dict[str, Any]] = []
    pipeline = build_pipeline(cfg)
    got = replay(cfg, records(dumps(evs)), plain.append, clock=lambda: NOW, pipeline=pipeline)
    assert got is pipeline
    marked = [{**e, "change": k % 7 == 0} for k, e in enumerate(evs)]
    again = replay(cfg, records(dumps(marked)), flagged.append, clock=lambda: NOW)
    assert orjson.dumps(flagged) == orjson.dumps(plain)
    assert not again.telemetry.snapshot().invalid_total
    assert again.monitors["m"].events_total == len(evs)


# -- backtests over generated histories -------------------------------------------------------
def history(
    tmp_path: Path, parts: list[tuple[int, bool]], t0: float = T0, flag: bool = True
) -> Path:
    """Consecutive parts of (events, shifted in x1) one second apart; with ``flag`` the
    first event of every part after the first carries ``"change": true``."""
    evs: list[dict[str, Any]] = []
    for seed, (n, shifted) in enumerate(parts, start=1):
        part = events(seed, n, shift=("x1",) if shifted else (), start=len(evs), t0=t0)
        if flag and evs:
            part[0]["change"] = True
        evs += part
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in evs))
    return path


def row(report, rule: str = "feature_drift"):
    return next(r for r in report.rows if r.rule == rule)


def fired(report, rule: str = "feature_drift") -> list[tuple[int, float, bool]]:
    return [(e.events, e.evaluated_at, e.breaches[rule]) for e in report.evaluations]


def test_backtest_finds_a_shift(tmp_path):
    report = backtest(config(tmp_path), history(tmp_path, [(600, False), (600, True)]))
    assert report.changes == {"m": [Change(600, T0 + 600, "e-600")]}
    assert not report.invalid and not report.unmatched
    # one evaluation every 100 events, and the last one at the end (T0 + 1199)
    assert [(e.events, e.evaluated_at) for e in report.evaluations] == [
        *((k * 100, T0 + k * 100) for k in range(1, 12)),
        (1200, T0 + 1199),
    ]
    assert [r.rule for r in report.rows] == ["feature_drift", "prediction_drift", "dataset_drift"]
    r = row(report)
    dw, base = r.driftwatch, r.baseline
    # the detector: quiet before the change, one breach from its detection to the end
    assert not any(f for events_seen, _, f in fired(report) if events_seen <= 600)
    assert (dw.evaluations, dw.changes, dw.alarms, dw.false_alarms, dw.missed) == (12, 1, 1, 0, 0)
    (hit,) = dw.detections
    assert 0 < hit.events <= 300  # a large shift: within three evaluations
    first = next(k for k, (_, _, f) in enumerate(fired(report)) if f)
    assert hit == Detection(0, first, first * 100 + 100 - 600, first * 100 + 100 - 600.0)
    # the baseline: 1 alarm in 12 evaluations fires at k = 11 only, the last evaluation
    assert [s.alarm for s in baseline(steps(fired(report)))] == [False] * 11 + [True]
    assert (base.alarms, base.false_alarms, base.missed) == (1, 0, 0)
    assert base.detections == (Detection(0, 11, 1200 - 600, 1199 - 600.0),)
    assert base.to_dict() == {
        "alarms": 1,
        "false_alarms": 0,
        "detected": 1,
        "missed": 0,
        "mean_delay_events": 600.0,
        "max_delay_events": 600,
        "mean_delay_seconds": 599.0,
        "max_delay_seconds": 599.0,
    }


def test_backtest_shift_and_shift_back(tmp_path):
    # a window of 400 events: the shift leaves the window 400 events after the shift back
    path = history(tmp_path, [(600, False), (600, True), (800, False)])
    report = backtest(config(tmp_path, window=400), path)
    assert report.changes == {
        "m": [Change(600, T0 + 600, "e-600"), Change(1200, T0 + 1200, "e-1200")]
    }
    dw, base = row(report).driftwatch, row(report).baseline
    assert len(report.evaluations) == 20  # 100, ..., 1900 events, and 2000 at the end
    assert (dw.changes, dw.alarms, dw.false_alarms, dw.missed) == (2, 1, 0, 0)
    first, second = dw.detections
    assert 0 < first.events <= 300
    # the shift back: at the first evaluation after it (1300 events) 300 of the window's
    # 400 events are still shifted, so the rule is still firing: detected there, by no alarm
    assert fired(report)[12] == (1300, T0 + 1300, True)
    assert second == Detection(1, 12, 100, 100.0)
    assert not fired(report)[-1][2]  # and it clears once the shift has left the window
    # the baseline: its one alarm, at the last evaluation, is in the second change's segment
    assert (base.alarms, base.false_alarms, base.missed) == (1, 0, 1)
    assert base.detections == (Detection(1, 19, 2000 - 1200, 1999 - 1200.0),)


def test_backtest_without_changes_every_alarm_is_false(tmp_path):
    path = history(tmp_path, [(600, False), (600, True)], flag=False)
    report = backtest(config(tmp_path), path)
    assert report.changes == {}
    for r in report.rows:
        alarms = sum(rising_edges([f for _, _, f in fired(report, r.rule)]))
        for f in (r.driftwatch, r.baseline):
            assert (f.changes, f.missed, f.detections) == (0, 0, ())
            assert f.alarms == f.false_alarms == alarms
    assert row(report).driftwatch.alarms == 1


def test_backtest_changes_file(tmp_path):
    flagged = backtest(config(tmp_path), history(tmp_path, [(600, False), (600, True)]))
    path = history(tmp_path, [(600, False), (600, True)], flag=False)
    listed = backtest(config(tmp_path), path, read_change_ids(write(tmp_path, "\ne-600\n\n")))
    assert listed.to_dict() == flagged.to_dict()
    assert listed.changes == flagged.changes
    assert listed.unmatched == []
    ids = read_change_ids(write(tmp_path, '["nope", "e-600", "nope", 7]'))
    assert ids == ["nope", "e-600", "nope", "7"]
    listed = backtest(config(tmp_path), path, ids)
    assert listed.to_dict() == flagged.to_dict()
    assert listed.unmatched == ["nope", "7"]  # e-7 is an event, 7 is not its id
    # both sources: the same event listed and flagged is one change point
    both = backtest(
        config(tmp_path), history(tmp_path, [(600, False), (600, True)]), ["e-600", "e-900"]
    )
    assert both.changes == {"m": [Change(600, T0 + 600, "e-600"), Change(900, T0 + 900, "e-900")]}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "changes.txt"
    path.write_text(text)
    return path


# -- the command --------------------------------------------------------------------------
def cli_files(tmp_path: Path) -> tuple[Path, Path]:
    """A config file and a history ending a day ago (for the daemon's wall clock)."""
    cfg = tmp_path / "driftwatch.yaml"
    cfg.write_text(yaml.safe_dump(doc(tmp_path)))
    t0 = float(int(time.time()) - 86_400)
    return cfg, history(tmp_path, [(600, False), (600, True)], t0=t0)


def test_cli_table(tmp_path, capsys):
    cfg, path = cli_files(tmp_path)
    with path.open("ab") as fh:
        fh.write(b"garbage\n")
    assert main(["backtest", "--config", str(cfg), "--input", str(path)]) == 0
    out, err = capsys.readouterr()
    expected = backtest(config(tmp_path), path)
    assert out == format_table(expected)
    assert "skipped invalid records: {'invalid_json': 1}" in err
    header, rule, *lines = out.splitlines()
    assert header.split("  ")[0] == "model"
    assert set(rule) == {"-", " "}
    assert len(lines) == 6  # 3 rules x (driftwatch, baseline)
    hit = row(expected).driftwatch.detections[0]
    assert lines[0].split() == [
        "m", "feature_drift", "driftwatch", "12", "1", "0", "1", "0",
        f"{hit.events:.1f}", str(hit.events), f"{hit.seconds:.1f}", f"{hit.seconds:.1f}",
    ]  # fmt: skip
    assert lines[1].split() == [
        "m", "feature_drift", "baseline", "12", "1", "0", "1", "0",
        "600.0", "600", "599.0", "599.0",
    ]  # fmt: skip
    assert lines[5].split()[2:] == ["baseline", "12", "0", "0", "1", "1", "-", "-", "-", "-"]


def test_cli_json(tmp_path, capsys):
    cfg, path = cli_files(tmp_path)
    changes = write(tmp_path, "e-600\nmissing-id\n")
    args = ["backtest", "--config", str(cfg), "--input", str(path), "--changes", str(changes)]
    assert main([*args, "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc == backtest(config(tmp_path), path, ["e-600"]).to_dict()
    assert "'missing-id' matches no valid prediction" in err
    first = doc["models"][0]
    assert (first["model"], first["rule"], first["evaluations"], first["changes"]) == (
        "m",
        "feature_drift",
        12,
        1,
    )
    assert first["baseline"]["mean_delay_seconds"] == 599.0
    assert doc["models"][-1]["driftwatch"]["mean_delay_events"] is None


def test_cli_errors_exit_2(tmp_path, capsys):
    cfg, path = cli_files(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: 3\n")
    assert main(["backtest", "--config", str(bad), "--input", str(path)]) == 2
    assert "invalid configuration" in capsys.readouterr().err
    absent = tmp_path / "absent.jsonl"
    assert main(["backtest", "--config", str(cfg), "--input", str(absent)]) == 2
    assert "--input" in capsys.readouterr().err
    args = ["backtest", "--config", str(cfg), "--input", str(path), "--changes"]
    assert main([*args, str(absent)]) == 2
    assert "--changes" in capsys.readouterr().err
    assert main([*args, str(write(tmp_path, "[1, null]"))]) == 2
    assert "item 1" in capsys.readouterr().err
    assert capsys.readouterr().out == ""
    # a pipe or directory: read twice, it would be scored against an empty replay
    assert main(["backtest", "--config", str(cfg), "--input", str(tmp_path)]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_recorded_evaluations_score_like_the_rows(tmp_path):
    report = backtest(config(tmp_path), history(tmp_path, [(600, False), (600, True)]))
    assert all(isinstance(e, Recorded) for e in report.evaluations)
    for r in report.rows:
        detector = steps(fired(report, r.rule))
        changes = report.changes["m"]
        assert r.driftwatch == score(detector, changes)
        assert r.baseline == score(baseline(detector), changes)
