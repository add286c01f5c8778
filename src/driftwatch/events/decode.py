"""Raw record bytes -> :class:`Prediction` / :class:`Label`, or :class:`InvalidEvent`.

The decoder is strict so that nothing invalid ever reaches a window: every
problem raises :class:`InvalidEvent` with one reason from :data:`INVALID_REASONS`
(a small fixed set, safe as a Prometheus label value).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
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
    "wrong_partition",
)


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    # orjson rejects NaN/Infinity literals; the stdlib accepts them, so such a record
    # is reported as "non_finite" by validation rather than as unparseable.
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent("invalid_json", str(exc)[:200]) from None


def parse_timestamp(value: object) -> float:
    """ISO-8601 string (naive means UTC) or epoch seconds -> epoch seconds."""
    if isinstance(value, bool):
        raise InvalidEvent("invalid_timestamp", "timestamp is a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidEvent("non_finite", "timestamp")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidEvent("invalid_timestamp", f"not ISO-8601: {value[:64]!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    raise InvalidEvent(
        "invalid_timestamp", f"expected a string or number, got {type(value).__name__}"
    )


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent("invalid_type", f"{what}: expected a number, got {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        raise InvalidEvent("non_finite", what)
    return f


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


def _ident(obj: Mapping[str, Any]) -> str:
    if "id" not in obj or obj["id"] is None:
        raise InvalidEvent("missing_field", "id")
    ident = obj["id"]
    if isinstance(ident, bool) or not isinstance(ident, (str, int)):
        raise InvalidEvent("invalid_type", f"id: expected a string, got {type(ident).__name__}")
    text = str(ident)
    if not text:
        raise InvalidEvent("missing_field", "id")
    return text


class Decoder:
    """Decodes and validates events against the configured models' schemas."""

    def __init__(self, schemas: Mapping[str, ModelSchema], max_bytes: int = 1_048_576) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.schemas = dict(schemas)
        self.max_bytes = max_bytes

    def _object(self, raw: bytes | None) -> tuple[dict[str, Any], ModelSchema]:
        if raw is None:
            raise InvalidEvent("invalid_json", "empty record (tombstone)")
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
            raise InvalidEvent("unknown_model", model[:128])
        return obj, schema

    def prediction(self, raw: bytes | None, default_timestamp: float) -> Prediction:
        """Decode one prediction record; ``default_timestamp`` is the Kafka record time."""
        obj, schema = self._object(raw)
        return self._prediction(obj, schema, default_timestamp)

    def event(self, raw: bytes | None, default_timestamp: float) -> Prediction | Label:
        """A prediction or a label, told apart by their fields (a file mixing both)."""
        obj, schema = self._object(raw)
        if "label" in obj and "prediction" not in obj:
            return self._label(obj, schema, default_timestamp)
        return self._prediction(obj, schema, default_timestamp)

    def _prediction(
        self, obj: dict[str, Any], schema: ModelSchema, default_timestamp: float
    ) -> Prediction:
        ident = _ident(obj)
        ts = obj.get("timestamp")
        timestamp = default_timestamp if ts is None else parse_timestamp(ts)

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
        if "prediction" not in obj or obj["prediction"] is None:
            raise InvalidEvent("missing_field", "prediction")
        pred = _target(obj["prediction"], schema.task, "prediction")
        score_raw = obj.get("score")
        score = None if score_raw is None else _number(score_raw, "score")
        return Prediction(schema.name, ident, timestamp, values, pred, score, segments)

    def label(self, raw: bytes | None, default_timestamp: float | None = None) -> Label:
        """Decode one label record."""
        obj, schema = self._object(raw)
        return self._label(obj, schema, default_timestamp)

    def _label(
        self, obj: dict[str, Any], schema: ModelSchema, default_timestamp: float | None
    ) -> Label:
        ident = _ident(obj)
        if "label" not in obj or obj["label"] is None:
            raise InvalidEvent("missing_field", "label")
        value = _target(obj["label"], schema.task, "label")
        ts = obj.get("timestamp")
        timestamp = default_timestamp if ts is None else parse_timestamp(ts)
        return Label(schema.name, ident, value, timestamp)
