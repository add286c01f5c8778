"""The columnar path is the per-event path, faster: property tests that run both.

* ``decode_batch`` (columns) and ``decode_each`` (one record at a time through the
  per-event :class:`Decoder`) agree on random batches mixing valid events, mutated ones
  and arbitrary bytes: the same valid events with the same values and types, the same
  invalid records with the same reasons and details, in both modes (topic / mixed).
* ``Pipeline.apply`` (columnar) and ``Pipeline.apply_events`` (per event) leave the same
  windows, counts, label joins, telemetry and dead letters on random streams with invalid
  records and labels mixed in, split into random batches, with segments, a categorical
  feature and a performance rule configured, in count and time windows.
* ``NumericalBins.bin`` (grid lookup) equals the two binary searches it replaces.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.events import Decoder, ModelSchema
from driftwatch.events.columns import DecodedBatch, PredictionColumns, decode_batch, decode_each
from driftwatch.pipeline import Pipeline
from driftwatch.sources.base import Record
from driftwatch.windows.reference import NumericalBinner, NumericalBins
from tests.unit.events.test_fuzz import (
    ADVERSARIAL,
    BYTES,
    DEC,
    DEFAULTS,
    FUZZ,
    READ,
    Obj,
    T,
    _mutate_bytes,
    _paths,
    _replace,
    dump,
    valid_events,
)


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def assert_same_columns(a: PredictionColumns, b: PredictionColumns) -> None:
    assert a.model == b.model
    assert a.rows == b.rows
    assert a.ids == b.ids and all(type(x) is str for x in a.ids)
    assert _same_array(a.timestamps, b.timestamps)
    assert _same_array(a.numerical, b.numerical)
    assert _same_array(a.scores, b.scores)
    assert a.categorical == b.categorical
    assert a.segments == b.segments
    assert a.version_list() == b.version_list()
    assert a.predictions == b.predictions
    assert [type(p) for p in a.predictions] == [type(p) for p in b.predictions]


def assert_same_batch(fast: DecodedBatch, slow: DecodedBatch) -> None:
    assert [(i, e.reason, e.detail) for i, e in sorted(fast.invalid, key=lambda x: x[0])] == [
        (i, e.reason, e.detail) for i, e in slow.invalid
    ]
    assert sorted(fast.labels, key=lambda x: x[0]) == slow.labels
    nonempty = {m: c for m, c in fast.columns.items() if len(c)}
    assert set(nonempty) == set(slow.columns)
    for model, cols in nonempty.items():
        assert_same_columns(cols, slow.columns[model])


def _mutated(data: st.DataObject) -> bytes:
    obj, _ = data.draw(valid_events())
    for _ in range(data.draw(st.integers(0, 2))):
        path = data.draw(st.sampled_from(READ) | st.sampled_from(_paths(obj)))
        how = data.draw(st.sampled_from(["replace", "replace", "duplicate-after", "remove"]))
        obj = _replace(obj, path, data.draw(ADVERSARIAL), how)
    raw = dump(obj)
    return _mutate_bytes(data, raw) if data.draw(st.integers(0, 4)) == 0 else raw


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[bytes | None], list[float]]:
    """Records as a producer might send them: mostly valid, some mutated, some garbage,
    often long runs of one valid shape (the fast path's case)."""
    data = draw(st.data())
    n = draw(st.integers(1, 25))
    values: list[bytes | None] = []
    for _ in range(n):
        kind = draw(st.sampled_from(["valid", "valid", "valid", "mutated", "bytes"]))
        if kind == "valid":
            values.append(dump(draw(valid_events())[0]))
        elif kind == "mutated":
            values.append(_mutated(data))
        else:
            values.append(draw(BYTES))
    times = draw(st.lists(DEFAULTS, min_size=n, max_size=n))
    return values, times


@FUZZ
@given(batches(), st.booleans())
def test_batch_decoding_equals_decoding_each_record(batch, mixed):
    values, times = batch
    assert_same_batch(
        decode_batch(DEC, values, times, mixed=mixed), decode_each(DEC, values, times, mixed=mixed)
    )


#: One field of an otherwise ordinary event set to a value off the fast path's shape.
DEVIATIONS: list[tuple[tuple[str, ...], Any]] = [
    (("id",), "x" * 256), (("id",), "x" * 257), (("id",), ""), (("id",), 7), (("id",), True),
    (("id",), None), (("id",), 2**64 - 1), (("timestamp",), None), (("timestamp",), True),
    (("timestamp",), "2026-11-22T06:00:00Z"), (("timestamp",), 0), (("timestamp",), 1e11),
    (("timestamp",), float(T) * 1e9), (("timestamp",), 2**64 - 1), (("timestamp",), [1]),
    (("features", "income"), "1.5"), (("features", "income"), True), (("features", "income"), None),
    (("features", "income"), {"a": 1}), (("features", "income"), 2**64 - 1),
    (("features", "income"), -(2**63)), (("features", "region"), 3), (("features", "region"), 3.0),
    (("features", "region"), False), (("features", "region"), None), (("features", "region"), [1]),
    (("features", "tier"), 1.5), (("features", "tier"), {}), (("features",), None),
    (("features",), []), (("prediction",), None), (("prediction",), 1.0), (("prediction",), "1"),
    (("prediction",), [1]), (("score",), None), (("score",), "0.5"), (("score",), True),
    (("score",), 2**63), (("model",), "r"), (("model",), "zz"), (("model",), 1),
    (("model",), ["m"]), (("model",), None), (("prediction",), 2**64),
    (("prediction",), 10**20), (("prediction",), -(2**63) - 1), (("prediction",), 2**64 - 1),
    (("extra",), {"deep": [[[1]]]}), (("features", "extra"), 1.5),
    (("model_version",), 3), (("model_version",), ""), (("model_version",), "v" * 128),
    (("model_version",), "v" * 129), (("model_version",), None), (("model_version",), True),
    (("model_version",), ["v1"]), (("model_version",), "é\u2028v"),
    (("model_version",), "__other__"),
]  # fmt: skip


def _obj(event: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, Obj(v.items()) if isinstance(v, dict) else v) for k, v in event.items()]


@FUZZ
@given(st.integers(1, 40), st.data())
def test_a_uniform_batch_with_a_few_odd_records(n, data):
    """The common case: one model, one shape, a handful of deviations at random places."""
    ts = float(T)
    versioned = data.draw(st.booleans())
    base = [
        {
            "model": "m",
            "id": f"p-{i}",
            "timestamp": ts - i,
            "features": {"income": 1000.0 + i, "age": 30 + i % 50, "region": "n", "tier": "a"},
            "prediction": i % 2,
            "score": (i % 10) / 10,
            **({"model_version": f"v{i % 3}"} if versioned else {}),
        }
        for i in range(n)
    ]
    values: list[bytes | None] = [orjson.dumps(e) for e in base]
    times = [float(T)] * n
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, n - 1))
        how = data.draw(st.sampled_from(["deviation", "deviation", "mutated", "bytes"]))
        if how == "deviation":
            path, value = data.draw(st.sampled_from(DEVIATIONS))
            values[at] = dump(_replace(Obj(_obj(base[at])), path, value, "replace"))
            if path == ("timestamp",) and value is None:
                times[at] = data.draw(st.sampled_from([0.0, -0.001, math.nan, 1e12, 5.0]))
        elif how == "mutated":
            values[at] = _mutated(data)
        else:
            values[at] = data.draw(BYTES)
    assert_same_batch(decode_batch(DEC, values, times), decode_each(DEC, values, times))


# -- binning ------------------------------------------------------------------------------


def _two_searches(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.searchsorted(edges, values, "left") + np.searchsorted(edges, values, "right")
    out[np.isnan(values)] = -1
    return out


EDGE_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-1000, 1000).map(float),
    st.floats(-1e-300, 1e-300),
)


@FUZZ
@given(
    st.lists(EDGE_VALUES, min_size=1, max_size=300),
    st.lists(st.one_of(EDGE_VALUES, st.floats()), max_size=200),
    st.booleans(),
)
def test_grid_binning_equals_binary_search(reference, values, reuse_edges):
    bins = NumericalBins.from_reference(reference)
    if reuse_edges:  # values exactly on edges, and just beside them
        edges = bins.fine_edges.tolist()
        values = values + edges + [math.nextafter(e, math.inf) for e in edges]
    arr = np.array(values, dtype=np.float64)
    expected = _two_searches(bins.fine_edges, arr)
    assert np.array_equal(bins.bin(arr), expected)
    assert np.array_equal(bins.bin(arr), expected)  # grid reused
    # several features at once, in either memory order (a column-major matrix is what
    # taking some events out of a batch's columns gives)
    other = NumericalBins.from_reference(np.arange(50.0))
    binner = NumericalBinner([bins, other, bins])
    with np.errstate(over="ignore"):
        scaled = arr * 7 - 3
    matrix = np.stack([arr, scaled, arr[::-1]])
    want = np.stack([expected, _two_searches(other.fine_edges, scaled), expected[::-1]])
    assert np.array_equal(binner.bin(matrix), want)
    assert np.array_equal(binner.bin(np.asfortranarray(matrix)), want)


def test_clustered_edges_fall_back_to_binary_search():
    rng = np.random.default_rng(5)
    heavy = rng.pareto(0.3, 5000)  # almost every edge in the first grid cell
    bins = NumericalBins.from_reference(heavy)
    for _ in range(5):
        values = rng.pareto(0.3, 4000)
        assert np.array_equal(bins.bin(values), _two_searches(bins.fine_edges, values))
    assert bins._binner.misses > 0


# -- the pipeline, both ways --------------------------------------------------------------

FEATURES = {"x": "numerical", "y": "numerical", "color": "categorical"}


def _reference(path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 2000
    x = rng.normal(0, 1, n)
    score = 1 / (1 + np.exp(-2 * x))
    pd.DataFrame(
        {
            "x": x,
            "y": np.round(rng.exponential(3, n)),
            "color": rng.choice(["red", "green", "blue"], n),
            "seg": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
            "score": score,
            "prediction": (score > 0.5).astype(int),
            "label": (rng.random(n) < score).astype(int),
        }
    ).to_csv(path, index=False)


def _pipelines(
    tmp: Path, window: dict[str, Any]
) -> tuple[Pipeline, Pipeline, list[Any], list[Any]]:
    ref = tmp / "ref.csv"
    if not ref.exists():
        _reference(ref)
    cfg = parse_config(
        {
            "kafka": {
                "bootstrap_servers": ["x:1"],
                "prediction_topic": "p",
                "label_topic": "l",
                "min_timestamp": 0,
            },
            "models": [
                {
                    "name": "m",
                    "reference": "ref.csv",
                    "window": window,
                    "features": FEATURES,
                    "segments": ["seg"],
                    "performance": {"metric": "accuracy", "min_labels": 5, "max_drop": 0.05},
                },
                {"name": "n", "reference": "ref.csv", "window": window, "features": FEATURES},
            ],
        },
        tmp,
    )
    fast_dlq: list[Any] = []
    slow_dlq: list[Any] = []

    class Letters:
        def __init__(self, sink: list[Any]) -> None:
            self.sink = sink

        def send(self, record: Record, reason: str, detail: str) -> None:
            self.sink.append((record.topic, record.offset, reason, detail))

    return (
        build_pipeline(cfg, dead_letters=Letters(fast_dlq)),
        build_pipeline(cfg, dead_letters=Letters(slow_dlq)),
        fast_dlq,
        slow_dlq,
    )


def _stream(seed: int, n: int, odd: float) -> tuple[list[Record], list[Record]]:
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for i in range(n):
        model = "m" if rng.random() < 0.8 else "n"
        features: dict[str, Any] = {
            "x": float(rng.normal(0.3 * (i > n // 2))),
            "y": int(rng.integers(0, 12)),
            "color": str(rng.choice(["red", "green", "blue", "mauve"])),
            "seg": str(rng.choice(["a", "b", "c", "zz"])),
        }
        if rng.random() < 0.05:
            del features["x"]
        if rng.random() < 0.05:
            features["y"] = None
        event: dict[str, Any] = {
            "model": model,
            "id": f"p{i}",
            "timestamp": 10_000.0 + i + float(rng.normal(0, 5)),
            "features": features,
            "prediction": int(rng.integers(0, 2)),
            "score": float(rng.random()),
        }
        raw = orjson.dumps(event)
        roll = rng.random()
        if roll < odd / 4:
            raw = raw[: int(rng.integers(0, len(raw)))]  # truncated
        elif roll < odd / 2:
            event["features"]["x"] = "1.5"  # a string
            raw = orjson.dumps(event)
        elif roll < 3 * odd / 4:
            event["id"] = i  # an integer id: valid, per-event path
            raw = json.dumps(event).encode()
        elif roll < odd:
            event["timestamp"] = "1970-01-01T03:00:00Z"  # ISO: valid, per-event path
            raw = orjson.dumps(event)
        preds.append(Record("p", 0, i, model.encode(), raw, 10_000.0 + i))
        if model == "m" and rng.random() < 0.6:
            label = {"model": "m", "id": f"p{i}", "label": int(rng.integers(0, 2))}
            labels.append((i + int(rng.integers(0, 200)), label))
    labels.sort(key=lambda x: x[0])
    label_records = [
        Record("l", 0, k, b"m", orjson.dumps(lab), 10_000.0 + at)
        for k, (at, lab) in enumerate(labels)
    ]
    return preds, label_records


def _state(pipe: Pipeline) -> Any:
    out = {}
    for name, monitor in pipe.monitors.items():
        meta, arrays = monitor.state()
        out[name] = (meta, {k: v.tolist() for k, v in arrays.items()})
    snap = pipe.telemetry.snapshot()
    return out, snap.events_total, snap.labels_total, snap.invalid_total


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    odd=st.sampled_from([0.0, 0.05, 0.3]),
    window=st.sampled_from([{"events": 100}, {"events": 1000}, {"seconds": 60}]),
    cuts=st.lists(st.integers(1, 120), min_size=1, max_size=8),
)
def test_columnar_and_per_event_pipelines_leave_the_same_state(
    tmp_path_factory, seed, n, odd, window, cuts
):
    tmp = tmp_path_factory.mktemp("cols")
    fast, slow, fast_dlq, slow_dlq = _pipelines(tmp, window)
    preds, labels = _stream(seed, n, odd)
    # interleave predictions and labels by position, then cut into random batches
    merged = sorted(preds + labels, key=lambda r: (r.timestamp, r.topic))
    start, k = 0, 0
    while start < len(merged):
        size = cuts[k % len(cuts)]
        chunk = merged[start : start + size]
        now = 10_000.0 + start
        fast.apply(chunk, now=now)
        slow.apply_events(chunk, now=now)
        start += size
        k += 1
    assert _state(fast) == _state(slow)
    assert sorted(fast_dlq) == sorted(slow_dlq)
    for name in fast.monitors:
        assert len(fast.monitors[name].join.labels) == len(slow.monitors[name].join.labels)


def test_a_poll_larger_than_the_decode_chunk_is_decoded_in_chunks_alike(tmp_path, monkeypatch):
    from driftwatch import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "DECODE_CHUNK", 16)
    fast, slow, fast_dlq, slow_dlq = _pipelines(tmp_path, {"events": 100})
    preds, labels = _stream(7, 300, 0.3)
    merged = sorted(preds + labels, key=lambda r: (r.timestamp, r.topic))
    for start in range(0, len(merged), 250):  # polls of 250 records: 16 chunks each
        fast.apply(merged[start : start + 250], now=10_000.0 + start)
        slow.apply_events(merged[start : start + 250], now=10_000.0 + start)
    assert _state(fast) == _state(slow)
    assert sorted(fast_dlq) == sorted(slow_dlq) and len(fast_dlq) > 10


def test_a_numerical_segment_column_is_read_as_a_category_as_per_event():
    schema = ModelSchema("s", "regression", {"x": "numerical", "c": "categorical"}, ("x", "c"))
    decoder = Decoder({"s": schema}, clock=lambda: float(T))
    values: list[bytes | None] = [
        orjson.dumps(
            {"model": "s", "id": f"e{i}", "features": {"x": i * 0.5, "c": "a"}, "prediction": i}
        )
        for i in range(20)
    ]
    times = [float(T)] * 20
    fast, slow = decode_batch(decoder, values, times), decode_each(decoder, values, times)
    assert_same_batch(fast, slow)
    assert fast.columns["s"].segments[0][:3] == ["0", "0.5", "1"]


def test_records_over_max_bytes_are_too_large_in_every_tier():
    ok = orjson.dumps(
        {"model": "m", "id": "a", "timestamp": T, "features": {"income": 1.0}, "prediction": 1}
    )
    decoder = Decoder(DEC.schemas, max_bytes=len(ok) - 1, clock=lambda: float(T))
    values: list[bytes | None] = [ok, ok.replace(b"1.0", b"1"), ok]  # the middle one fits
    times = [float(T)] * 3
    fast = decode_batch(decoder, values, times)
    assert_same_batch(fast, decode_each(decoder, values, times))
    assert [(i, e.reason) for i, e in fast.invalid] == [(0, "too_large"), (2, "too_large")]


def test_a_feature_name_msgspec_cannot_rename_keeps_the_other_tiers():
    schema = ModelSchema("q", "classification", {'price "usd"': "numerical", "b\\\\": "numerical"})
    decoder = Decoder({"q": schema}, clock=lambda: float(T))
    values: list[bytes | None] = [
        orjson.dumps(
            {
                "model": "q",
                "id": f"e{i}",
                "features": {'price "usd"': i, "b\\\\": 1},
                "prediction": 1,
            }
        )
        for i in range(5)
    ]
    times = [float(T)] * 5
    fast = decode_batch(decoder, values, times)
    assert_same_batch(fast, decode_each(decoder, values, times))
    assert len(fast.columns["q"]) == 5


def test_decode_batch_is_total_even_on_record_times_numpy_cannot_hold():
    raw = orjson.dumps({"model": "m", "id": "a", "features": {}, "prediction": 1})
    values: list[bytes | None] = [raw, raw]
    times: list[Any] = [10**400, float(T)]  # an int numpy cannot hold as a float
    fast = decode_batch(DEC, values, times)
    assert_same_batch(fast, decode_each(DEC, values, times))
