from __future__ import annotations

import json

import pytest

from driftwatch.errors import InvalidEvent
from driftwatch.events import Decoder, ModelSchema
from driftwatch.events.schema import category_key

SCHEMA = ModelSchema("m", "classification", {"income": "numerical", "region": "categorical"})
DEC = Decoder({"m": SCHEMA}, max_bytes=10_000)


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
    assert DEC.prediction(ok(timestamp=None), 123.5).timestamp == 123.5


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
