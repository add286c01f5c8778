"""Property tests: the decoder is total. On any bytes (or a None tombstone) it returns a
valid event or raises InvalidEvent with a listed reason; nothing else ever escapes.

The CI profile is bounded (200 examples per test, a few seconds). The long fuzz run
(25,000 examples per test, about four minutes on one core):

    HYPOTHESIS_PROFILE=fuzz .venv/bin/pytest -q tests/unit/events/test_fuzz.py
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftwatch.errors import InvalidEvent
from driftwatch.events import INVALID_REASONS, Decoder, Label, ModelSchema, Prediction
from driftwatch.events.decode import MAX_DETAIL, MIN_TIMESTAMP, parse_timestamp
from driftwatch.events.schema import category_key

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
PROFILES = {
    "ci": settings(max_examples=200, deadline=None, suppress_health_check=_SLOW),
    "fuzz": settings(max_examples=25_000, deadline=None, suppress_health_check=list(HealthCheck)),
}
FUZZ = PROFILES.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), PROFILES["ci"])

NOW = 1_795_392_000.0  # 2026-11-23T00:00:00Z: the decoder's (injected) wall clock
T = 1_795_327_200  # 2026-11-22T06:00:00Z
CLS = ModelSchema(
    "m",
    "classification",
    {"income": "numerical", "age": "numerical", "region": "categorical"},
    segments=("tier",),
)
REG = ModelSchema("r", "regression", {"income": "numerical"})
SCHEMAS = {"m": CLS, "r": REG}
DEC = Decoder(SCHEMAS, max_bytes=1_048_576, max_id_length=256, clock=lambda: NOW)

BIG = b"1" * 400
DEEP = b"[" * 200_000 + b"]" * 200_000


# -- the oracle ---------------------------------------------------------------------------


def assert_valid(event: Prediction | Label) -> None:
    """Everything a window may rely on."""
    schema = SCHEMAS[event.model]
    assert isinstance(event.id, str) and 1 <= len(event.id) <= DEC.max_id_length
    if isinstance(event, Label):
        target: object = event.label
        if event.timestamp is not None:
            assert MIN_TIMESTAMP <= event.timestamp <= NOW + DEC.max_future_seconds
    else:
        assert isinstance(event.timestamp, float)
        assert MIN_TIMESTAMP <= event.timestamp <= NOW + DEC.max_future_seconds
        assert set(event.features) == set(schema.features)
        for name in schema.numerical:
            v = event.features[name]
            assert v is None or (type(v) is float and math.isfinite(v))
        for name in schema.categorical:
            assert event.features[name] is None or type(event.features[name]) is str
        assert set(event.segments) == set(schema.segments)
        assert all(v is None or type(v) is str for v in event.segments.values())
        assert event.score is None or (type(event.score) is float and math.isfinite(event.score))
        target = event.prediction
    if schema.task == "regression":
        assert type(target) is float and math.isfinite(target)
    else:
        assert type(target) is str


def outcome(call: Any, *args: Any) -> Prediction | Label | str:
    """The event, or the InvalidEvent's reason (checked); any other exception fails the test."""
    try:
        event: Prediction | Label = call(*args)
    except InvalidEvent as exc:
        assert exc.reason in INVALID_REASONS, exc.reason
        assert exc.reason != "internal_error", exc.detail  # a decoder bug
        assert isinstance(exc.detail, str) and len(exc.detail) <= MAX_DETAIL
        return exc.reason
    assert_valid(event)
    return event


def decode_every_way(raw: bytes | None, default: float) -> list[Prediction | Label | str]:
    return [
        outcome(DEC.prediction, raw, default),
        outcome(DEC.label, raw, default),
        outcome(DEC.label, raw),
        outcome(DEC.event, raw, default),
    ]


DEFAULTS = st.one_of(
    st.sampled_from([NOW, float(T), -0.001, 0.0, -1.0, NOW + 3600, 1e12 * 1.795, 5.0]),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(),
)


# -- adversarial JSON ---------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text inserted verbatim (what json.dumps cannot or will not write)."""

    text: bytes


class Obj(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, so that it can hold duplicate keys."""


def dump(value: Any) -> bytes:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        return b"{" + b", ".join(dump(k) + b": " + dump(v) for k, v in value) + b"}"
    if isinstance(value, list):
        return b"[" + b", ".join(dump(v) for v in value) + b"]"
    if isinstance(value, dict):
        return dump(Obj(value.items()))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()  # bool, None, int, float (NaN and Infinity as literals)


#: JSON text no serializer writes: numbers beyond the double range, non-finite literals,
#: nesting deeper than any parser should recurse, malformed strings and numbers.
HUGE_NUMBERS = [
    BIG, b"-" + b"9" * 400, b"7" * 5000, b"1e400", b"-1e400", b"1E309", b"1e99999999999999999999",
    b"0." + b"0" * 500 + b"1e400", b"18446744073709551616", b"18446744073709551615",
    b"-9223372036854775809", b"1" * 19, b"1.0e+308", b"5e-324", b"1e-400",
]  # fmt: skip
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"-NaN", b"NaNa", b"[NaN]", b'{"a": Infinity}']
DEEP_NESTING = [
    DEEP, b"[" * 1024 + b"]" * 1024, b"[" * 1025 + b"]" * 1025, b"[" * 5000,
    b'{"a": ' * 3000 + b"1" + b"}" * 3000, b"[" * 3000 + b"NaN" + b"]" * 3000,
    b"[" * 3000 + BIG + b"]" * 3000,
]  # fmt: skip
MALFORMED = [
    b"-0", b"-0.0", b"0e0", b"01", b"1.", b".5", b"+1", b"1e", b'"\\ud800"', b'"\\udc00\\ud800"',
    b'"\\u0000"', b'"' + b"x" * 300_000 + b'"', b"[" + b"1," * 50_000 + b"1]", b"tru", b"nul",
    b'"\xff"', b"\xef\xbb\xbf", b"{}", b"[]", b'""', b"",
]  # fmt: skip

STAMP_VALUES: list[object] = [
    T, T * 1_000, T * 1_000_000, T * 1_000_000_000, NOW + 300, NOW + 301, 1e11, 1e11 - 1,
    1e14, 1e17, 1e20, MIN_TIMESTAMP, MIN_TIMESTAMP - 1, 0, -1, 2**63, 2**64 - 1,
    "9999-12-31T23:59:59Z", "0001-01-01", "2026-11-22", "2026-11-22T06:00:00+14:00",
    "2026-11-22T06:00:00.123456789Z", "10000-01-01", "2026-02-30", "now", " ", "Z", "\x00" * 60,
]  # fmt: skip
STAMPS = st.one_of(
    st.sampled_from(STAMP_VALUES),
    st.datetimes(timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-23))])).map(
        datetime.isoformat
    ),
    st.floats(),
    st.integers(),
)

POISON = st.sampled_from([HUGE_NUMBERS, NON_FINITE, DEEP_NESTING, MALFORMED]).flatmap(
    lambda kind: st.sampled_from(kind).map(Raw)
)
OTHER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and ±Infinity are written as the literals
    st.text(),
    st.text(min_size=250, max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    STAMPS,
)
#: Half of the replacement values are poison.
ADVERSARIAL = st.booleans().flatmap(lambda poison: POISON if poison else OTHER)

# -- (a) arbitrary bytes --------------------------------------------------------------------

TOKENS = [
    b"{", b"}", b"[", b"]", b":", b",", b" ", b'"', b"\\", b"-", b"0", b"1", b"1.5", b"e",
    b"true", b"false", b"null", b"NaN", b"Infinity", b"-Infinity", b"1e400", BIG,
    b'"model"', b'"m"', b'"r"', b'"id"', b'"p-1"', b'"features"', b'"income"', b'"region"',
    b'"tier"', b'"prediction"', b'"label"', b'"score"', b'"timestamp"', b'"2026-11-22T06:00:00Z"',
    b"1795327200", b"1795327200000", b"\xef\xbb\xbf", b"\xff", b"\xfe", b"\x00", b"\xed\xa0\x80",
    b'"\\ud800"', b'"\\u0000"', b"\xc3\xa9", b"[" * 2000,
]  # fmt: skip
PLAUSIBLE = b'{"model": "m", "id": "p", "features": {"income": %s}, "prediction": 1}'
BYTES = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join),
    st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join),
    st.tuples(st.binary(max_size=40), POISON, st.binary(max_size=40)).map(
        lambda parts: parts[0] + parts[1].text + parts[2]
    ),
    POISON.map(lambda poison: PLAUSIBLE % poison.text),
)


@FUZZ
@given(raw=BYTES, default=DEFAULTS)
def test_any_bytes_decode_to_an_event_or_invalid_event(raw, default):
    decode_every_way(raw, default)


# -- (b) valid events and their mutations -------------------------------------------------

FINITE = st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | FINITE | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)

CATEGORIES = st.one_of(st.text(max_size=30), st.integers(-(2**63), 2**63 - 1), st.booleans())
NUMBERS = st.one_of(st.integers(-(2**63), 2**64 - 1), FINITE)


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[Obj, dict[str, Any]]:
    """A valid prediction or label, and what it must decode to."""
    model = draw(st.sampled_from(["m", "r"]))
    schema = SCHEMAS[model]
    ident = draw(st.one_of(st.text(min_size=1, max_size=256), st.integers(0, 2**64 - 1)))
    when = draw(st.integers(0, 10**6))  # seconds before NOW
    seconds = float(T - when)
    stamp = draw(
        st.sampled_from(
            [
                T - when,
                (T - when) * 1000,
                (T - when) * 1_000_000,
                datetime.fromtimestamp(T - when, timezone.utc).isoformat(),
                datetime.fromtimestamp(T - when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                None,
            ]
        )
    )
    obj = Obj([("model", model), ("id", ident)])
    if stamp is not None:
        obj.append(("timestamp", stamp))
    expect: dict[str, Any] = {"model": model, "id": str(ident), "timestamp": seconds}
    if stamp is None:
        expect["timestamp"] = None  # the default
    if draw(st.booleans()):  # a label
        value = draw(NUMBERS if schema.task == "regression" else CATEGORIES)
        obj.append(("label", value))
        expect["label"] = float(value) if schema.task == "regression" else category_key(value)
        return obj, expect
    features = Obj()
    expect["features"] = {}
    for name, kind in schema.features.items():
        if draw(st.integers(0, 9)) == 0:
            expect["features"][name] = None  # missing
            continue
        value = draw(NUMBERS if kind == "numerical" else CATEGORIES)
        features.append((name, value))
        expect["features"][name] = float(value) if kind == "numerical" else category_key(value)
    obj.append(("features", features))
    pred = draw(NUMBERS if schema.task == "regression" else CATEGORIES)
    obj.append(("prediction", pred))
    expect["prediction"] = float(pred) if schema.task == "regression" else category_key(pred)
    if draw(st.booleans()):
        score = draw(st.floats(0, 1))
        obj.append(("score", score))
        expect["score"] = score
    if draw(st.integers(0, 2)) == 0:
        version = draw(st.text(min_size=1, max_size=128))
        obj.append(("model_version", version))
        expect["model_version"] = version
    return obj, expect


@FUZZ
@given(valid_events(), st.sampled_from([float(T - 7), -0.001]), st.booleans())
def test_valid_events_decode_to_what_they_say(case, default, bom):
    obj, expect = case
    event = outcome(DEC.event, b"\xef\xbb\xbf" * bom + dump(obj), default)
    assert not isinstance(event, str), event
    stamp = expect["timestamp"]
    if stamp is None:
        stamp = NOW if default <= 0 else default
    assert (event.model, event.id, event.timestamp) == (expect["model"], expect["id"], stamp)
    if isinstance(event, Label):
        assert event.label == expect["label"]
    else:
        assert event.features == expect["features"]
        assert event.prediction == expect["prediction"]
        assert event.score == expect.get("score")
        assert event.model_version == expect.get("model_version")


@FUZZ
@given(valid_events(), st.lists(st.tuples(st.text(max_size=8), JSON_VALUES), max_size=3))
def test_extra_fields_are_ignored(case, extra):
    obj, _ = case
    fields = {"model", "id", "timestamp", "features", "prediction", "score", "label"}
    fields.add("model_version")
    extra = [(k, v) for k, v in extra if k not in fields]
    plain = DEC.event(dump(obj), float(T))
    assert DEC.event(dump(Obj([*obj, *extra])), float(T)) == plain


#: Where a configured value is read: mutations aim here half of the time.
READ = [
    ("model",), ("id",), ("timestamp",), ("prediction",), ("score",), ("label",), ("features",),
    ("model_version",),
    ("features", "income"), ("features", "age"), ("features", "region"), ("features", "tier"),
]  # fmt: skip


def _paths(obj: Obj) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [(k,) for k, _ in obj]
    for k, v in obj:
        if isinstance(v, Obj):
            out += [(k, kk) for kk, _ in v]
            out.append((k, "new-feature"))
    return [*out, ("new-field",), ("model",), ("id",), ("features", "income")]


def _replace(obj: Obj, path: tuple[str, ...], value: Any, how: str) -> Obj:
    """A copy with ``path`` set to ``value``: replaced, duplicated before/after, or removed."""
    head, rest = path[0], path[1:]
    out = Obj()
    found = False
    for k, v in obj:
        if k != head:
            out.append((k, v))
            continue
        found = True
        if rest:
            inner = v if isinstance(v, Obj) else Obj()
            out.append((k, _replace(inner, rest, value, how)))
        elif how == "replace":
            out.append((k, value))
        elif how == "duplicate-before":
            out += [(k, value), (k, v)]
        elif how == "duplicate-after":
            out += [(k, v), (k, value)]
        # "remove": drop it
    if not found and how != "remove":
        out.append((head, _replace(Obj(), rest, value, how) if rest else value))
    return out


def _mutate_bytes(data: st.DataObject, raw: bytes) -> bytes:
    how = data.draw(
        st.sampled_from(
            ["none", "truncate", "flip", "insert", "delete", "bom", "bom-inside", "utf16", "utf32"]
        )
    )
    at = data.draw(st.integers(0, len(raw)))
    if how == "truncate":
        return raw[:at]
    if how == "flip" and at < len(raw):
        return raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1 :]
    if how == "insert":
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if how == "delete":
        return raw[:at] + raw[at + data.draw(st.integers(1, 16)) :]
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "bom-inside":
        return raw[:at] + b"\xef\xbb\xbf" + raw[at:]
    if how in ("utf16", "utf32"):
        return raw.decode("utf-8", "replace").encode(how)
    return raw


@FUZZ
@given(valid_events(), st.data(), DEFAULTS)
def test_mutated_events_decode_to_an_event_or_invalid_event(case, data, default):
    obj, _ = case
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(READ) | st.sampled_from(_paths(obj)))
        how = data.draw(
            st.sampled_from(["replace", "replace", "duplicate-before", "duplicate-after", "remove"])
        )
        obj = _replace(obj, path, data.draw(ADVERSARIAL), how)
    raw = _mutate_bytes(data, dump(obj))
    decode_every_way(raw, default)


@FUZZ
@given(st.one_of(STAMPS, ADVERSARIAL))
def test_parse_timestamp_is_total(value):
    try:
        seconds = parse_timestamp(value)
    except InvalidEvent as exc:
        assert exc.reason in ("invalid_timestamp", "non_finite")
    else:
        assert isinstance(seconds, float) and math.isfinite(seconds)


@FUZZ
@given(
    st.one_of(
        st.integers(),
        st.integers(min_value=10**4000, max_value=10**4400),
        st.floats(),
        st.text(),
        st.booleans(),
        st.integers(-(2**63) + 1, 2**63 - 1).map(np.int64),
        st.floats(width=32).map(np.float32),
        st.floats().map(np.float64),
        st.booleans().map(np.bool_),
        st.lists(st.integers(), max_size=3).map(np.array),
        st.none(),
    )
)
def test_category_key_is_total(value):
    key = category_key(value)
    assert type(key) is str
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if abs(int(value)) < 2**53:
            assert key == str(int(value))
    elif isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isfinite(f) and f.is_integer() and abs(f) < 2**53:
            assert key == str(int(f))
        elif math.isfinite(f):
            assert float(key) == f
