"""``driftwatch replay``: event time starts at the first valid event, invalid lines never
move it, gaps are coalesced, and the run is linear in its input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from driftwatch import replay as replay_module
from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.replay import replay, replay_file
from driftwatch.sources.base import Record
from driftwatch.sources.replay import read_records
from tests.helpers import FEATURES, events, reference_frame

NOW = 1_795_392_000.0  # the wall clock the replay is given (2026-11-23T00:00:00Z)
T0 = 1_790_000_000.0  # helpers.events' first timestamp (2026-09-21)
INTERVAL = 100
MAX_LINES = 60  # no test here expects more; the old replay printed ~10^7 for some files


def config(tmp_path: Path, window: dict[str, Any] | None = None, **kafka: Any):
    reference_frame().to_csv(tmp_path / "ref.csv", index=False)
    return parse_config(
        {
            "kafka": {"bootstrap_servers": ["127.0.0.1:1"], "prediction_topic": "p"} | kafka,
            "evaluation": {"interval_seconds": INTERVAL},
            "models": [
                {
                    "name": "m",
                    "reference": "ref.csv",
                    "window": window or {"events": 1000},
                    "features": dict(FEATURES),
                    "drift": {"threshold": 0.2, "min_events": 200},
                }
            ],
        },
        tmp_path,
    )


def run(cfg, lines: list[bytes]) -> list[str]:
    out: list[str] = []

    def emit(line: dict[str, Any]) -> None:
        out.append(orjson.dumps(line).decode())
        if len(out) > MAX_LINES:
            raise AssertionError(f"more than {MAX_LINES} evaluation lines")

    records = [Record("replay", 0, i, None, line, 0.0) for i, line in enumerate(lines)]
    replay(cfg, records, emit, clock=lambda: NOW)
    return out


def stream(n1: int = 600, n2: int = 600) -> list[dict[str, Any]]:
    """n1 + n2 events one second apart from T0, the second part drifted in x1."""
    return events(1, n1) + events(2, n2, shift=("x1",), start=n1)


def dump(evs: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(e).encode() for e in evs]


def at(evs: list[dict[str, Any]], **over) -> bytes:
    return json.dumps({**evs[0], "id": "bad", **over}).encode()


def evaluated_at(out: list[str]) -> list[float]:
    return [json.loads(line)["evaluated_at"] for line in out]


EVS = stream()
# 1200 events over 1199 s: ticks at T0 + 100, ..., T0 + 1100, and one at the end
EXPECTED = [T0 + k * INTERVAL for k in range(1, 12)] + [T0 + 1199]

BAD_FIRST_LINES = {
    "not json": b"garbage",
    "far future": at(EVS, timestamp=NOW + 86_400),
    "far future in ms": at(EVS, timestamp=int((NOW + 86_400) * 1000)),
    "timestamp 1e300": at(EVS, timestamp=1e300),
    "timestamp 1e400": b'{"model": "m", "id": "x", "timestamp": 1e400}',
    "before 2000": at(EVS, timestamp=5.0),
    "invalid feature, earlier timestamp": at(
        EVS, timestamp=T0 - 1e6, features={**EVS[0]["features"], "x1": "bad"}
    ),
    "no model": json.dumps({"timestamp": T0 - 1e6}).encode(),
    "deep nesting": b'{"model": "m", "timestamp": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    "400-digit feature": at(EVS).replace(b'"x1": ', b'"x1": ' + b"9" * 400 + b', "_": '),
}


def test_clean_file_evaluates_on_the_event_time_grid(tmp_path):
    out = run(config(tmp_path), dump(EVS))
    assert evaluated_at(out) == EXPECTED
    final = json.loads(out[-1])
    assert final["window"]["events"] == 1000
    assert final["breaches"]["feature_drift"]


@pytest.mark.parametrize("bad", list(BAD_FIRST_LINES.values()), ids=list(BAD_FIRST_LINES))
def test_an_invalid_first_line_does_not_start_the_clock(tmp_path, bad):
    cfg = config(tmp_path)
    clean = run(cfg, dump(EVS))
    assert run(cfg, [bad, *dump(EVS)]) == clean
    assert len(clean) == len(EXPECTED)


@pytest.mark.parametrize("bad", list(BAD_FIRST_LINES.values()), ids=list(BAD_FIRST_LINES))
def test_an_invalid_line_in_the_middle_does_not_move_the_clock(tmp_path, bad):
    cfg = config(tmp_path)
    lines = dump(EVS)
    assert run(cfg, [*lines[:300], bad, *lines[300:]]) == run(cfg, lines)


def test_millisecond_timestamps_replay_like_seconds(tmp_path):
    cfg = config(tmp_path)
    ms = [{**e, "timestamp": int(e["timestamp"] * 1000)} for e in EVS]
    assert run(cfg, dump(ms)) == run(cfg, dump(EVS))
    first_in_ms = [dump(ms[:1])[0], *dump(EVS[1:])]  # one producer still sends ms
    assert run(cfg, first_in_ms) == run(cfg, dump(EVS))


def test_a_gap_is_one_coalesced_evaluation(tmp_path):
    gap = 1_000_000  # 10,000 intervals without data
    evs = events(1, 500) + events(2, 500, start=500, t0=T0 + gap - 500)
    out = run(config(tmp_path), dump(evs))
    assert evaluated_at(out) == [
        *(T0 + k * INTERVAL for k in range(1, 5)),
        T0 + gap,  # the 10,000 ticks in the gap: one evaluation, at the last of them
        *(T0 + gap + k * INTERVAL for k in range(1, 5)),
        T0 + gap + 499,
    ]


def test_lines_without_timestamp_before_the_first_take_its_time(tmp_path):
    cfg = config(tmp_path, window={"seconds": 3600})
    untimed = [{k: v for k, v in e.items() if k != "timestamp"} for e in EVS[:5]]
    timed_alike = [{**e, "timestamp": EVS[5]["timestamp"]} for e in untimed]
    out = run(cfg, dump(untimed + EVS[5:]))
    assert out == run(cfg, dump(timed_alike + EVS[5:]))
    assert json.loads(out[-1])["window"]["events"] == len(EVS)
    assert evaluated_at(out)[0] == EVS[5]["timestamp"] + INTERVAL


def test_a_file_without_timestamps_is_stamped_with_the_wall_clock(tmp_path, monkeypatch):
    untimed = dump([{k: v for k, v in e.items() if k != "timestamp"} for e in EVS[:300]])
    out = run(config(tmp_path), untimed)
    assert evaluated_at(out) == [NOW]
    assert json.loads(out[0])["window"]["events"] == 300
    monkeypatch.setattr(replay_module, "MAX_HELD", 10)  # held lines are bounded
    assert run(config(tmp_path), untimed) == out


def test_read_records_bounds_a_long_line(tmp_path):
    path = tmp_path / "in.jsonl"
    good = dump(EVS[:2])
    path.write_bytes(good[0] + b"\n" + b"x" * 1_000_000 + b"\n\n  " + good[1] + b"  \r\n")
    recs = list(read_records(path, max_line_bytes=1000))
    assert [r.offset for r in recs] == [0, 1, 3]
    assert [len(r.value or b"") for r in recs] == [len(good[0]), 1064, len(good[1])]
    assert recs[2].value == good[1]
    assert [r.value for r in read_records(path)] == [good[0], b"x" * 1_000_000, good[1]]


def test_replay_file_counts_a_long_line_as_too_large(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = dump(EVS[:300])
    lines.insert(100, b'{"model": "m", "pad": "' + b"x" * 2_000_000 + b'"}')
    path.write_bytes(b"\n".join(lines) + b"\n")
    out: list[dict[str, Any]] = []
    pipeline = replay_file(config(tmp_path), path, out.append, clock=lambda: NOW)
    assert dict(pipeline.telemetry.snapshot().invalid_total) == {"too_large": 1}
    assert out[-1]["window"]["events"] == 300


def test_kafka_limits_reach_the_decoder(tmp_path):
    default = build_pipeline(config(tmp_path)).decoder
    assert (default.max_id_length, default.max_future_seconds, default.min_timestamp) == (
        256,
        300.0,
        946_684_800.0,
    )
    cfg = config(tmp_path, max_id_length=8, max_future_seconds=0, min_timestamp=T0)
    decoder = build_pipeline(cfg).decoder
    assert (decoder.max_id_length, decoder.max_future_seconds, decoder.min_timestamp) == (
        8,
        0.0,
        T0,
    )
    # a replay with those limits: ids of 9+ characters and events before T0 are invalid
    evs = [{**e, "id": f"e{i}"} for i, e in enumerate(EVS[:300])]
    evs[10]["id"] = "123456789"
    evs[20]["timestamp"] = T0 - 1
    out: list[dict[str, Any]] = []
    records = [Record("replay", 0, i, None, line, 0.0) for i, line in enumerate(dump(evs))]
    pipeline = replay(cfg, records, out.append, clock=lambda: NOW)
    assert dict(pipeline.telemetry.snapshot().invalid_total) == {
        "invalid_id": 1,
        "timestamp_out_of_range": 1,
    }
    assert out[-1]["window"]["events"] == 298
