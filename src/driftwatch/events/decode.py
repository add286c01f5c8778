"""Raw record bytes -> :class:`Prediction` / :class:`Label`, or :class:`InvalidEvent`.

This is the per-event decoder: the reference for what is valid. The hot path
(``events.columns``) decodes batches with msgspec and orjson and hands every record it
does not accept, whole, to this decoder, so the two never disagree.

The decoder is strict and total, so that nothing invalid ever reaches a window and no
record can stop the poll loop: on *any* input (bytes of any content and size, or a
``None`` tombstone) it returns a valid event or raises :class:`InvalidEvent` with one
reason from :data:`INVALID_REASONS` (a small fixed set, safe as a Prometheus label value)
and a detail of at most :data:`MAX_DETAIL` characters. No other exception escapes.

How it stays total:

- JSON is parsed by orjson only (here). orjson has no recursion (nesting deeper than 1024 is an
  error), rejects invalid UTF-8 and lone surrogates, and returns integers beyond 64 bits
  as floats. No recursive or big-integer fallback parser is ever run: a record orjson
  rejects is invalid. When it stopped at a ``NaN``/``Infinity`` literal (not JSON) or at
  a number beyond the double range (``1e400``, a 400-digit integer) the reason is
  ``non_finite``, otherwise ``invalid_json`` -- found by looking at the one token where
  orjson stopped, so the happy path costs nothing extra.
- A leading UTF-8 byte-order mark is ignored; UTF-16/32 are ``invalid_json``.
- Duplicate keys: the last one wins (orjson's rule; there is no other parser).
- Values decoded into an event are only ever type-checked and converted (never
  ``repr``-ed or walked), so a deeply nested value in an ignored field is harmless.

Timestamps (see :func:`parse_timestamp` and :meth:`Decoder.check_timestamp`): epoch
seconds, milliseconds, microseconds or nanoseconds told apart by magnitude, or ISO-8601;
valid from ``min_timestamp`` (default 2000-01-01) to ``max_future_seconds`` (default 300)
ahead of the wall clock, else ``timestamp_out_of_range``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import orjson

from driftwatch.errors import InvalidEvent
from driftwatch.events.schema import FeatureValue, Label, ModelSchema, Prediction, category_key

INVALID_REASONS = (
    "too_large",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "unknown_model",
    "invalid_type",
    "non_finite",
    "invalid_timestamp",
    "timestamp_out_of_range",
    "invalid_id",
    "invalid_version",
    "wrong_partition",
    "not_inference_event",  # a CloudEvent, but no inference request/response (CONTRACT §12)
    "invalid_shape",  # payload-log rows/tensors whose counts or shapes disagree
    "internal_error",
)

#: 2000-01-01T00:00:00Z: older timestamps are ``timestamp_out_of_range`` (a unit error,
#: an unset clock or a zero default, not a real event time).
MIN_TIMESTAMP = 946_684_800.0
#: How far ahead of the wall clock an event may be: producers' clock skew. Further ahead
#: it would move an event-time window's clock and evict everything else.
MAX_FUTURE_SECONDS = 300.0
#: Longest ``id`` accepted, in characters (ids are held in memory and in checkpoints).
MAX_ID_LENGTH = 256
#: Longest ``model_version`` accepted, in characters (a Prometheus label value).
MAX_VERSION_LENGTH = 128
#: The name of the pooled versions (CONTRACT section 9): no event may carry it.
POOLED_VERSION = "__other__"
#: Longest :attr:`InvalidEvent.detail`; details quote the record only in short excerpts.
MAX_DETAIL = 200

# Epoch timestamps are told apart by magnitude: 1e11 s is the year 5138, so a number that
# large cannot be seconds and is read as milliseconds; likewise 1e14 (ms of the year 5138)
# starts microseconds and 1e17 nanoseconds. Each unit then covers 1973 to 5138.
_MS, _US, _NS = 1e11, 1e14, 1e17
_MAX_ISO_LENGTH = 64
_BOM = b"\xef\xbb\xbf"
_BYTES_LIKE = (bytes, bytearray, memoryview)
# The token orjson stopped at, when it is a non-finite literal or a (too large) number.
_TOKEN = re.compile(r"-?(?:NaN|Infinity|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)")
_AFTER_TOKEN = frozenset(" \t\r\n,]}")


def _clip(text: str, limit: int = MAX_DETAIL) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _non_finite_at(raw: bytes, pos: int) -> bool:
    """Whether the JSON token at character ``pos`` is ``NaN``/``Infinity`` or a number
    beyond the double range. Only called after orjson failed, at the position it gave."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if not 0 <= pos < len(text):
        return False
    match = _TOKEN.match(text, pos)
    if match is None:
        return False
    end = match.end()
    if end < len(text) and text[end] not in _AFTER_TOKEN:
        return False
    token = match.group()
    if token.endswith(("NaN", "Infinity")):
        return True
    try:
        return math.isinf(float(token))  # linear in the token's length
    except ValueError:
        return False


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        error = exc
    if raw.startswith(_BOM):  # a UTF-8 byte-order mark is tolerated (once)
        raw = raw[len(_BOM) :]
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            error = exc
    if _non_finite_at(raw, error.pos):
        raise InvalidEvent(
            "non_finite", _clip(f"NaN, Infinity or a number beyond the double range: {error}")
        ) from None
    raise InvalidEvent("invalid_json", _clip(str(error))) from None


def _from_epoch(seconds: float) -> float:
    """Epoch seconds, milliseconds, microseconds or nanoseconds (by magnitude) -> seconds."""
    if seconds >= _MS:
        if seconds >= _NS:
            return seconds / 1e9
        if seconds >= _US:
            return seconds / 1e6
        return seconds / 1e3
    return seconds


def parse_timestamp(value: object) -> float:
    """ISO-8601 string (naive means UTC), or epoch seconds/ms/µs/ns -> epoch seconds.

    Raises ``invalid_timestamp`` or ``non_finite``; the range is checked separately
    (:meth:`Decoder.check_timestamp`).
    """
    if isinstance(value, bool):
        raise InvalidEvent("invalid_timestamp", "timestamp is a boolean")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # a Python int beyond the double range
            raise InvalidEvent("non_finite", "timestamp") from None
        if not math.isfinite(seconds):
            raise InvalidEvent("non_finite", "timestamp")
        return _from_epoch(seconds)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_ISO_LENGTH:
            raise InvalidEvent("invalid_timestamp", f"not ISO-8601: {len(value)} characters")
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return dt.timestamp()
        except (ValueError, OverflowError, OSError):
            raise InvalidEvent("invalid_timestamp", _clip(f"not ISO-8601: {value!r}")) from None
    raise InvalidEvent(
        "invalid_timestamp", f"expected a string or number, got {type(value).__name__}"
    )


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent("invalid_type", f"{what}: expected a number, got {type(value).__name__}")
    try:
        f = float(value)
    except OverflowError:
        raise InvalidEvent("non_finite", what) from None
    if not math.isfinite(f):
        raise InvalidEvent("non_finite", what)
    return f


def check_version(value: object) -> str:
    """A ``model_version``: a string of 1 to :data:`MAX_VERSION_LENGTH` characters."""
    if type(value) is not str:
        raise InvalidEvent(
            "invalid_type", f"model_version: expected a string, got {type(value).__name__}"
        )
    if value == POOLED_VERSION:
        raise InvalidEvent("invalid_version", f"model_version: {POOLED_VERSION} is reserved")
    if not 0 < len(value) <= MAX_VERSION_LENGTH:
        raise InvalidEvent(
            "invalid_version",
            f"model_version: {len(value)} characters, not 1 to {MAX_VERSION_LENGTH}",
        )
    return value


def _category(value: object, what: str) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEvent("non_finite", what)
    if isinstance(value, (str, int, float, bool)):
        return category_key(value)
    raise InvalidEvent(
        "invalid_type", f"{what}: expected a string or number, got {type(value).__name__}"
    )


def _target(value: object, task: str, what: str) -> float | str:
    """A prediction or label: a number for regression, a category for classification."""
    return _number(value, what) if task == "regression" else _category(value, what)


def _internal(exc: Exception) -> InvalidEvent:
    """The last line of defence: a bug in the decoder must cost one record, not the loop."""
    return InvalidEvent("internal_error", _clip(f"{type(exc).__name__}: {exc}"))


class Decoder:
    """Decodes and validates events against the configured models' schemas.

    ``clock`` is the wall clock (``time.time``), read at most once per record, for the
    ``max_future_seconds`` bound and for records without any timestamp.
    """

    def __init__(
        self,
        schemas: Mapping[str, ModelSchema],
        max_bytes: int = 1_048_576,
        *,
        max_id_length: int = MAX_ID_LENGTH,
        min_timestamp: float = MIN_TIMESTAMP,
        max_future_seconds: float = MAX_FUTURE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if max_id_length <= 0:
            raise ValueError("max_id_length must be positive")
        if not (math.isfinite(min_timestamp) and math.isfinite(max_future_seconds)):
            raise ValueError("min_timestamp and max_future_seconds must be finite")
        if max_future_seconds < 0:
            raise ValueError("max_future_seconds must not be negative")
        self.schemas = dict(schemas)
        self.max_bytes = max_bytes
        self.max_id_length = max_id_length
        self.min_timestamp = float(min_timestamp)
        self.max_future_seconds = float(max_future_seconds)
        self.clock = clock

    # -- public API: total -------------------------------------------------------------------
    def prediction(
        self, raw: bytes | None, default_timestamp: float, *, require_timestamp: bool = False
    ) -> Prediction:
        """Decode one prediction record; ``default_timestamp`` is the Kafka record time
        (used when the event has none; 0 or less means the record has none either, and the
        wall clock is used). ``require_timestamp`` makes an event without a ``timestamp``
        invalid (``missing_field``, detail ``timestamp``) instead."""
        try:
            obj, schema = self._object(raw)
            return self._prediction(obj, schema, default_timestamp, require_timestamp)
        except InvalidEvent:
            raise
        except Exception as exc:  # by design: nothing else ever escapes
            raise _internal(exc) from None

    def label(
        self,
        raw: bytes | None,
        default_timestamp: float | None = None,
        *,
        require_timestamp: bool = False,
    ) -> Label:
        """Decode one label record. Without a ``timestamp`` it takes ``default_timestamp``
        (the record time; ``None``: joined at arrival; 0 or less: the wall clock)."""
        try:
            obj, schema = self._object(raw)
            return self._label(obj, schema, default_timestamp, require_timestamp)
        except InvalidEvent:
            raise
        except Exception as exc:  # by design: nothing else ever escapes
            raise _internal(exc) from None

    def event(
        self, raw: bytes | None, default_timestamp: float, *, require_timestamp: bool = False
    ) -> Prediction | Label:
        """A prediction or a label, told apart by their fields (a file mixing both)."""
        try:
            obj, schema = self._object(raw)
            if "label" in obj and "prediction" not in obj:
                return self._label(obj, schema, default_timestamp, require_timestamp)
            return self._prediction(obj, schema, default_timestamp, require_timestamp)
        except InvalidEvent:
            raise
        except Exception as exc:  # by design: nothing else ever escapes
            raise _internal(exc) from None

    def check_timestamp(self, seconds: float, now: float) -> float:
        """``seconds`` if it lies in [``min_timestamp``, ``now + max_future_seconds``],
        else ``InvalidEvent("timestamp_out_of_range")``."""
        if self.min_timestamp <= seconds <= now + self.max_future_seconds:
            return seconds
        raise InvalidEvent(
            "timestamp_out_of_range",
            f"{seconds!r} is not between {self.min_timestamp!r} and "
            f"{self.max_future_seconds!r} s after the wall clock ({now!r})",
        )

    # -- the checks --------------------------------------------------------------------------
    def _object(self, raw: bytes | None) -> tuple[dict[str, Any], ModelSchema]:
        if raw is None:
            raise InvalidEvent("invalid_json", "empty record (tombstone)")
        if not isinstance(raw, bytes):
            if not isinstance(raw, _BYTES_LIKE):
                raise InvalidEvent("invalid_json", f"expected bytes, got {type(raw).__name__}")
            raw = bytes(raw)
        if len(raw) > self.max_bytes:
            raise InvalidEvent("too_large", f"{len(raw)} bytes > {self.max_bytes}")
        obj = _loads(raw)
        if not isinstance(obj, dict):
            raise InvalidEvent("not_an_object", f"got a JSON {type(obj).__name__}")
        model = obj.get("model")
        if model is None:
            raise InvalidEvent("missing_field", "model")
        if not isinstance(model, str):
            raise InvalidEvent(
                "invalid_type", f"model: expected a string, got {type(model).__name__}"
            )
        schema = self.schemas.get(model)
        if schema is None:
            raise InvalidEvent("unknown_model", _clip(model, 128))
        return obj, schema

    def _ident(self, obj: Mapping[str, Any]) -> str:
        ident = obj.get("id")
        if ident is None:
            raise InvalidEvent("missing_field", "id")
        if isinstance(ident, str):
            text = ident
        elif isinstance(ident, int) and not isinstance(ident, bool):
            if ident.bit_length() > 4 * self.max_id_length:  # more digits than allowed
                raise InvalidEvent("invalid_id", f"id: longer than {self.max_id_length}")
            text = str(ident)
        else:
            raise InvalidEvent("invalid_type", f"id: expected a string, got {type(ident).__name__}")
        if not text:
            raise InvalidEvent("missing_field", "id")
        if len(text) > self.max_id_length:
            raise InvalidEvent("invalid_id", f"id: {len(text)} characters > {self.max_id_length}")
        return text

    def _timestamp(
        self, obj: Mapping[str, Any], default: float | None, require: bool
    ) -> float | None:
        """The event's time, else the record's (``default``), else the wall clock; checked."""
        value = obj.get("timestamp")
        if value is None:
            if require:
                raise InvalidEvent("missing_field", "timestamp")
            if default is None:
                return None
            now = self.clock()
            if not default > 0:  # no record time either (kafka-python: -1 ms), or NaN
                return now
            return self.check_timestamp(_from_epoch(default), now)
        seconds = parse_timestamp(value)
        return self.check_timestamp(seconds, self.clock())

    def _prediction(
        self,
        obj: dict[str, Any],
        schema: ModelSchema,
        default_timestamp: float,
        require: bool = False,
    ) -> Prediction:
        ident = self._ident(obj)
        timestamp = self._timestamp(obj, default_timestamp, require)
        if timestamp is None:  # only when the caller passed None, against the signature
            timestamp = self.clock()

        feats = obj.get("features")
        if feats is None:
            raise InvalidEvent("missing_field", "features")
        if not isinstance(feats, dict):
            raise InvalidEvent(
                "invalid_type", f"features: expected an object, got {type(feats).__name__}"
            )
        values: dict[str, FeatureValue] = {}
        for name in schema.numerical:
            v = feats.get(name)
            values[name] = None if v is None else _number(v, f"features.{name}")
        for name in schema.categorical:
            v = feats.get(name)
            values[name] = None if v is None else _category(v, f"features.{name}")

        segments: dict[str, str | None] = {}
        for name in schema.segments:
            v = feats.get(name)
            segments[name] = None if v is None else _category(v, f"features.{name}")
        pred_raw = obj.get("prediction")
        if pred_raw is None:
            raise InvalidEvent("missing_field", "prediction")
        pred = _target(pred_raw, schema.task, "prediction")
        score_raw = obj.get("score")
        score = None if score_raw is None else _number(score_raw, "score")
        version = obj.get("model_version")
        if version is not None:
            version = check_version(version)
        return Prediction(schema.name, ident, timestamp, values, pred, score, segments, version)

    def _label(
        self,
        obj: dict[str, Any],
        schema: ModelSchema,
        default_timestamp: float | None,
        require: bool = False,
    ) -> Label:
        ident = self._ident(obj)
        value_raw = obj.get("label")
        if value_raw is None:
            raise InvalidEvent("missing_field", "label")
        value = _target(value_raw, schema.task, "label")
        timestamp = self._timestamp(obj, default_timestamp, require)
        return Label(schema.name, ident, value, timestamp)
