from __future__ import annotations

import numpy as np
import pytest

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.errors import CheckpointError
from driftwatch.state import codec
from driftwatch.state.checkpoint import FileStore, PartitionCheckpoint
from tests.helpers import FEATURES, events, reference_frame
from tests.unit.test_pipeline import records


def test_codec_round_trip_and_refusals():
    arrays: dict[str, np.ndarray] = {"a": np.arange(5), "m::counts": np.ones((2, 3), np.int32)}
    blob = codec.encode({"x": [1, "y"]}, arrays)
    meta, back = codec.decode(blob)
    assert meta == {"x": [1, "y"]}
    assert back["a"].tolist() == [0, 1, 2, 3, 4] and back["m::counts"].dtype == np.int32
    corrupt = bytearray(blob)
    corrupt[-5] ^= 0xFF
    with pytest.raises(CheckpointError, match="corrupt"):
        codec.decode(bytes(corrupt), "p-0")
    with pytest.raises(CheckpointError, match="version 9"):
        codec.decode(blob[:4] + (9).to_bytes(2, "big") + blob[6:])
    with pytest.raises(CheckpointError, match="truncated"):
        codec.decode(blob[:5])
    with pytest.raises(CheckpointError, match="not a driftwatch checkpoint"):
        codec.decode(b"PK\x03\x04" + blob[4:])


def pipeline(tmp_path, window=None):
    if not (tmp_path / "ref.csv").exists():
        reference_frame().to_csv(tmp_path / "ref.csv", index=False)
    model = {
        "name": "m",
        "reference": "ref.csv",
        "window": window or {"events": 700},
        "features": dict(FEATURES),
        "drift": {"min_events": 100},
        "alerts": {"consecutive": 2},
    }
    return build_pipeline(
        parse_config(
            {"kafka": {"bootstrap_servers": ["x:1"], "prediction_topic": "p"}, "models": [model]},
            tmp_path,
        )
    )


@pytest.mark.parametrize("window", [{"events": 700}, {"seconds": 500}])
def test_restored_state_continues_exactly_like_the_uninterrupted_run(tmp_path, window):
    stream = records(events(1, 1500) + events(2, 1500, shift=("x2",), start=1500))
    straight = pipeline(tmp_path, window)
    straight.apply(stream[:1000])
    straight.evaluate(1.0)
    states, alerts = straight.capture(["m"])
    blob = PartitionCheckpoint("p", 0, {"p": 1000}, states, alerts).encode()

    resumed = pipeline(tmp_path, window)
    cp = PartitionCheckpoint.decode(blob, "p-0")
    resumed.restore(cp.models, cp.alerts)
    assert cp.offsets == {"p": 1000}
    for pipe in (straight, resumed):
        for k in range(1000, 3000, 250):
            pipe.apply(stream[k : k + 250])
            pipe.evaluate(2.0 + k)
    a, b = straight.monitors["m"], resumed.monitors["m"]
    assert np.array_equal(a.window.totals, b.window.totals)
    assert a.window.events == b.window.events and a.events_total == b.events_total == 3000
    ea, eb = straight.evaluate(9e9)[0][0], resumed.evaluate(9e9)[0][0]
    assert ea.to_dict() == eb.to_dict()
    assert straight.alerts["m"].states == resumed.alerts["m"].states


def test_layout_change_is_refused(tmp_path):
    pipe = pipeline(tmp_path)
    pipe.apply(records(events(1, 100)))
    states, alerts = pipe.capture(["m"])
    other = pipeline(tmp_path, {"seconds": 60})
    with pytest.raises(ValueError, match=r"fingerprint|does not match"):
        other.restore(states, alerts)


def test_changed_reference_with_as_many_bins_is_refused(tmp_path):
    """The bins' count alone does not catch a new reference: the fingerprint does."""
    pipe = pipeline(tmp_path)
    pipe.apply(records(events(1, 100)))
    states, alerts = pipe.capture(["m"])
    frame = reference_frame()
    frame["x1"] = frame["x1"] * 1.5 + 0.25  # same shape, other edges
    frame.to_csv(tmp_path / "ref.csv", index=False)
    other = pipeline(tmp_path)
    assert other.monitors["m"].window.nbins == pipe.monitors["m"].window.nbins
    with pytest.raises(ValueError, match="fingerprint"):
        other.restore(states, alerts)
    same = pipeline(tmp_path)
    same.restore(*other.capture(["m"]))  # the same layout restores


def test_file_store_is_atomic_and_leaves_no_temp_files(tmp_path):
    store = FileStore(tmp_path / "cp")
    assert store.load("p-0") is None
    store.save("p-0", b"one")
    store.save("p-0", b"two")
    assert store.load("p-0") == b"two"
    assert [p.name for p in (tmp_path / "cp").iterdir()] == ["p-0.dwck"]
