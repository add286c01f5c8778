from __future__ import annotations

import json
import math

import numpy as np
import pytest

from driftwatch.errors import InvalidEvent
from driftwatch.events import INVALID_REASONS, Decoder, ModelSchema
from driftwatch.events.schema import category_key

SCHEMA = ModelSchema("m", "classification", {"income": "numerical", "region": "categorical"})
DEC = Decoder({"m": SCHEMA}, max_bytes=10_000, clock=lambda: 1_795_392_000.0)


def ok(**over):
    ev = {
        "model": "m",
        "id": "p-1",
        "timestamp": "2026-11-22T06:00:00Z",
        "features": {"income": 52000.0, "region": "north"},
        "prediction": 1,
        "score": 0.8,
    }
    ev.update(over)
    return json.dumps(ev).encode()


def test_valid_prediction():
    p = DEC.prediction(ok(), default_timestamp=0.0)
    assert (p.model, p.id, p.prediction, p.score) == ("m", "p-1", "1", 0.8)
    assert p.timestamp == 1795327200.0
    assert p.features == {"income": 52000.0, "region": "north"}


def test_timestamp_forms_and_default():
    assert DEC.prediction(ok(timestamp=1700000000), 0.0).timestamp == 1700000000.0
    assert DEC.prediction(ok(timestamp="2026-11-22T06:00:00"), 0.0).timestamp == 1795327200.0
    assert DEC.prediction(ok(timestamp=None), 1700000000.5).timestamp == 1700000000.5


def test_missing_feature_is_none_not_invalid():
    p = DEC.prediction(ok(features={"income": 1.0}), 0.0)
    assert p.features["region"] is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (ok(id=None), "missing_field"),
        (json.dumps({"model": "m", "features": {}, "prediction": 1}).encode(), "missing_field"),
        (ok(model="other"), "unknown_model"),
        (ok(features={"income": "lots", "region": "x"}), "invalid_type"),
        (ok(features={"income": True, "region": "x"}), "invalid_type"),
        (ok(features={"income": 1.0, "region": {"a": 1}}), "invalid_type"),
        (ok(features=[1, 2]), "invalid_type"),
        (b'{"model": "m", "id": "x", "features": {"income": NaN}, "prediction": 1}', "non_finite"),
        (
            b'{"model": "m", "id": "x", "features": {"income": Infinity}, "prediction": 1}',
            "non_finite",
        ),
        (ok(score="high"), "invalid_type"),
        (ok(timestamp="yesterday"), "invalid_timestamp"),
        (ok(prediction=None), "missing_field"),
        (ok(model=5), "invalid_type"),
        (b"x" * 10_001, "too_large"),
        (None, "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
    ],
)
def test_invalid_records(raw, reason):
    with pytest.raises(InvalidEvent) as exc:
        DEC.prediction(raw, 0.0)
    assert exc.value.reason == reason


def test_label_decoding():
    lab = DEC.label(b'{"model": "m", "id": 7, "label": true}')
    assert (lab.id, lab.label) == ("7", "true")
    with pytest.raises(InvalidEvent, match="missing_field"):
        DEC.label(b'{"model": "m", "id": 7}')


def test_category_key_unifies_spellings():
    assert category_key(1) == category_key(1.0) == category_key("1") == "1"
    assert category_key(True) == "true"
    assert category_key(0.5) == "0.5"


# -- regressions: poison records (issue "Poison-proof and crash-proof") -------------------

NOW = 1_795_392_000.0  # 2026-11-23T00:00:00Z, the injected wall clock
REG = ModelSchema("r", "regression", {"income": "numerical"})


def fixed(**kw):
    return Decoder({"m": SCHEMA, "r": REG}, max_bytes=2_000_000, clock=lambda: NOW, **kw)


def raw_event(**raw_values: bytes) -> bytes:
    """An event whose fields are given as raw JSON text (for what json.dumps cannot write)."""
    fields = {
        "model": b'"m"',
        "id": b'"p-1"',
        "timestamp": b'"2026-11-22T06:00:00Z"',
        "features": b'{"income": 52000.0, "region": "north"}',
        "prediction": b"1",
    }
    fields.update(raw_values)
    return b"{" + b", ".join(b'"%s": %s' % (k.encode(), v) for k, v in fields.items()) + b"}"


BIG = b"1" * 400
DEEP = b"[" * 200_000 + b"]" * 200_000


def reason_of(call, *args):
    with pytest.raises(InvalidEvent) as exc:
        call(*args)
    return exc.value.reason


@pytest.mark.parametrize(
    "raw",
    [
        raw_event(features=b'{"income": ' + BIG + b', "region": "north"}'),
        raw_event(features=b'{"income": -' + BIG + b', "region": "north"}'),
        raw_event(features=b'{"income": 1, "region": ' + BIG + b"}"),
        raw_event(features=b'{"income": 1, "region": "n", "ignored": ' + BIG + b"}"),
        raw_event(features=b'{"income": ' + b"7" * 5000 + b"}"),  # past int->str's digit limit
        raw_event(score=BIG),
        raw_event(prediction=BIG),
        raw_event(timestamp=BIG),
        raw_event(timestamp=b"1e400"),
        raw_event(timestamp=b"-1e400"),
        raw_event(id=BIG),
        raw_event(features=b'{"income": 1e400}'),
        raw_event(extra=b"NaN"),  # a NaN literal is not JSON, wherever it is
        raw_event(score=b'NaN, "score": 0.5'),  # duplicate keys: no parser may drop the NaN
        raw_event(features=b'{"income": -Infinity}'),
    ],
)
def test_numbers_of_any_magnitude_are_non_finite_never_an_exception(raw):
    assert reason_of(fixed().prediction, raw, NOW) == "non_finite"
    assert reason_of(fixed().event, raw, NOW) == "non_finite"


@pytest.mark.parametrize("model", ["m", "r"])
def test_huge_targets_in_labels_and_regression_predictions(model):
    dec = fixed()
    assert reason_of(dec.prediction, raw_event(model=b'"r"', prediction=BIG), NOW) == "non_finite"
    label = b'{"model": "%s", "id": "p-1", "label": %s}' % (model.encode(), BIG)
    assert reason_of(dec.label, label, NOW) == "non_finite"
    assert reason_of(dec.event, label, NOW) == "non_finite"
    stamp = b'{"model": "%s", "id": "p-1", "label": 1, "timestamp": %s}' % (model.encode(), BIG)
    assert reason_of(dec.label, stamp, NOW) == "non_finite"


@pytest.mark.parametrize(
    "raw",
    [
        DEEP,
        b"{" + b'"a": {' * 200_000 + b"}" * 200_001,
        raw_event(features=b'{"income": ' + DEEP + b"}"),
        raw_event(extra=DEEP),
        raw_event(extra=b"[" * 200_000 + b"NaN" + b"]" * 200_000),
        raw_event(extra=b"[" * 200_000),  # unbalanced
        b"[" * 1_000_000,
    ],
)
def test_deep_nesting_is_invalid_json_not_a_recursion_error(raw):
    assert reason_of(fixed().prediction, raw, NOW) == "invalid_json"
    assert reason_of(fixed().label, raw, NOW) == "invalid_json"


def test_nesting_orjson_accepts_is_harmless():
    deep = b"[" * 1000 + b"]" * 1000
    p = fixed().prediction(raw_event(extra=deep), NOW)
    assert p.features == {"income": 52000.0, "region": "north"}
    bad = raw_event(features=b'{"income": 1, "region": ' + deep + b"}")
    assert reason_of(fixed().prediction, bad, NOW) == "invalid_type"


def test_utf8_bom_is_stripped_utf16_is_invalid_json():
    dec = fixed()
    assert dec.prediction(b"\xef\xbb\xbf" + ok(), NOW).id == "p-1"
    text = ok().decode()
    for encoded in (text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-16-be")):
        assert reason_of(dec.prediction, encoded, NOW) == "invalid_json"
    assert reason_of(dec.prediction, b"\xef\xbb\xbf", NOW) == "invalid_json"
    assert reason_of(dec.prediction, b"\xef\xbb\xbf\xef\xbb\xbf" + ok(), NOW) == "invalid_json"
    assert reason_of(dec.prediction, ok()[:-1] + b"\xff}", NOW) == "invalid_json"
    assert reason_of(dec.prediction, raw_event(id=b'"\\ud800"'), NOW) == "invalid_json"


def test_duplicate_keys_last_wins():
    raw = raw_event(model=b'"zzz", "model": "m"', score=b'"high", "score": 0.25')
    p = fixed().prediction(raw, NOW)
    assert (p.model, p.score) == ("m", 0.25)


def test_ids_are_capped():
    dec = fixed()
    assert dec.prediction(ok(id="x" * 256), NOW).id == "x" * 256
    assert reason_of(dec.prediction, ok(id="x" * 257), NOW) == "invalid_id"
    long_label = b'{"model": "m", "id": "%s", "label": 1}' % (b"y" * 10**6)
    assert reason_of(dec.label, long_label, NOW) == "invalid_id"
    assert fixed(max_id_length=3).prediction(ok(id=123), NOW).id == "123"
    assert reason_of(fixed(max_id_length=3).prediction, ok(id=1234), NOW) == "invalid_id"
    assert dec.prediction(ok(id=2**64 - 1), NOW).id == str(2**64 - 1)
    assert reason_of(dec.prediction, ok(id=1.5), NOW) == "invalid_type"


def test_details_are_truncated():
    dec = fixed()
    for raw in (
        ok(model="q" * 100_000),
        ok(timestamp="2" * 100_000),
        ok(timestamp="\x00" * 64),  # repr() quadruples it
        b"{" * 100_000,
        ok(features={"income": "z" * 100_000}),
    ):
        with pytest.raises(InvalidEvent) as exc:
            dec.prediction(raw, NOW)
        assert len(exc.value.detail) <= 200
    assert len(str(exc.value)) <= 250


def test_non_bytes_records_are_invalid_json():
    assert reason_of(fixed().prediction, ok().decode(), NOW) == "invalid_json"
    assert fixed().prediction(bytearray(ok()), NOW).id == "p-1"
    assert fixed().prediction(memoryview(ok()), NOW).id == "p-1"


# -- time sanity --------------------------------------------------------------------------

T = 1_795_327_200  # 2026-11-22T06:00:00Z


@pytest.mark.parametrize(
    "stamp", [T, T * 1_000, T * 1_000_000, T * 1_000_000_000, float(T), T * 1e3, f"{T}000"]
)
def test_epoch_seconds_ms_us_ns_are_recognised(stamp):
    if isinstance(stamp, str):  # a numeric string is not a timestamp
        assert reason_of(fixed().prediction, ok(timestamp=stamp), NOW) == "invalid_timestamp"
    else:
        assert fixed().prediction(ok(timestamp=stamp), NOW).timestamp == float(T)


@pytest.mark.parametrize(
    "stamp",
    [
        NOW + 301,
        (NOW + 301) * 1000,
        1e300,
        1e11 - 1,  # seconds: year 5138
        946_684_799,  # 1999-12-31T23:59:59Z
        0,
        -1,
        -1e300,
        123.5,
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "0001-01-01",
        "1999-12-31T23:59:59Z",
        "2026-11-23T00:05:01Z",  # 301 s ahead
    ],
)
def test_timestamps_out_of_range(stamp):
    dec = fixed()
    assert reason_of(dec.prediction, ok(timestamp=stamp), NOW) == "timestamp_out_of_range"
    label = json.dumps({"model": "m", "id": "1", "label": 1, "timestamp": stamp}).encode()
    assert reason_of(dec.label, label, NOW) == "timestamp_out_of_range"


def test_range_bounds_are_inclusive_and_configurable():
    assert fixed().prediction(ok(timestamp=NOW + 300), NOW).timestamp == NOW + 300
    assert fixed().prediction(ok(timestamp=946_684_800), NOW).timestamp == 946_684_800
    dec = fixed(max_future_seconds=0.0, min_timestamp=NOW - 10)
    assert dec.prediction(ok(timestamp=NOW), NOW).timestamp == NOW
    assert reason_of(dec.prediction, ok(timestamp=NOW + 0.5), NOW) == "timestamp_out_of_range"
    assert reason_of(dec.prediction, ok(timestamp=NOW - 11), NOW) == "timestamp_out_of_range"


@pytest.mark.parametrize(
    "stamp", ["10000-01-01T00:00:00Z", "2026-13-01", "2026-11-22T06:00:00+24:00", "", "1e400"]
)
def test_unparseable_iso_strings(stamp):
    assert reason_of(fixed().prediction, ok(timestamp=stamp), NOW) == "invalid_timestamp"


def test_record_timestamp_default_is_checked_and_missing_means_wall_clock():
    dec = fixed()
    no_ts = ok(timestamp=None)
    assert dec.prediction(no_ts, T).timestamp == T
    assert dec.prediction(no_ts, T * 1000.0).timestamp == T
    for missing in (-0.001, 0.0, -1.0, math.nan):  # kafka-python: -1 ms when the broker has none
        assert dec.prediction(no_ts, missing).timestamp == NOW
        assert dec.event(no_ts, missing).timestamp == NOW
    for bad in (NOW + 3600, 123.5, math.inf):
        assert reason_of(dec.prediction, no_ts, bad) == "timestamp_out_of_range"
    label = b'{"model": "m", "id": "1", "label": 0}'
    assert dec.label(label).timestamp is None  # joined at arrival
    assert dec.label(label, -0.001).timestamp == NOW
    assert dec.label(label, T).timestamp == T
    assert reason_of(dec.label, label, NOW + 3600) == "timestamp_out_of_range"


def test_wall_clock_is_read_once_per_record():
    calls = []

    def clock():
        calls.append(1)
        return NOW

    dec = Decoder({"m": SCHEMA}, clock=clock)
    dec.prediction(ok(timestamp=None), -0.001)
    dec.prediction(ok(), NOW)
    dec.label(b'{"model": "m", "id": "1", "label": 0}', -0.001)
    assert len(calls) <= 3


def test_model_version_is_an_optional_short_string():
    assert fixed().prediction(ok(), NOW).model_version is None
    assert fixed().prediction(ok(model_version="v2.1"), NOW).model_version == "v2.1"
    assert fixed().prediction(ok(model_version=None), NOW).model_version is None
    for bad, reason in (
        (3, "invalid_type"),
        ("", "invalid_version"),
        ("v" * 129, "invalid_version"),
        ("__other__", "invalid_version"),
    ):
        assert reason_of(fixed().prediction, ok(model_version=bad), NOW) == reason


def test_require_timestamp_for_replay():
    with pytest.raises(InvalidEvent) as exc:
        fixed().event(ok(timestamp=None), NOW, require_timestamp=True)
    assert (exc.value.reason, exc.value.detail) == ("missing_field", "timestamp")


def test_invalid_reasons_are_listed():
    assert {"internal_error", "timestamp_out_of_range", "invalid_id"} <= set(INVALID_REASONS)
    assert len(set(INVALID_REASONS)) == len(INVALID_REASONS)
    corpus = [
        b"x" * 2_000_001,
        b"{",
        b"[]",
        b"{}",
        ok(model="zzz"),
        ok(score="high"),
        raw_event(score=b"NaN"),
        ok(id="x" * 300),
        ok(timestamp="yesterday"),
        ok(timestamp=NOW + 3600),
        ok(model_version="v" * 129),
    ]
    reached = {reason_of(fixed().prediction, raw, NOW) for raw in corpus}
    # the pipeline, not the decoder, raises these two; the payload-log parser
    # (events.cloudevents, tested there) the last two
    assert reached == set(INVALID_REASONS) - {
        "wrong_partition",
        "internal_error",
        "not_inference_event",
        "invalid_shape",
    }


# -- category keys ------------------------------------------------------------------------


class SelfItem:
    def item(self):
        return self

    def __str__(self):
        return "self-item"


class BadItem:
    def item(self):
        raise RuntimeError("no")

    def __str__(self):
        return "bad-item"


def test_category_key_never_raises():
    assert category_key(10**5000) == "1" + "0" * 5000
    assert category_key(-(10**5000)) == "-1" + "0" * 5000
    assert category_key(1e308) == str(int(1e308))
    assert category_key(math.nan) == "nan"
    assert category_key(math.inf) == "inf"
    assert category_key(-0.0) == "0"
    assert category_key(np.float64(2.0)) == "2"
    assert category_key(np.float64(0.5)) == category_key(0.5) == "0.5"
    assert category_key(np.float32(0.5)) == "0.5"
    assert category_key(np.int64(-3)) == "-3"
    assert category_key(np.uint64(2**64 - 1)) == str(2**64 - 1)
    assert category_key(np.bool_(False)) == "false"
    assert category_key(np.str_("north")) == "north"
    assert category_key(np.array(3)) == "3"
    assert isinstance(category_key(np.array([1, 2])), str)
    assert category_key(SelfItem()) == "self-item"
    assert category_key(BadItem()) == "bad-item"
    assert category_key(None) == "None"
