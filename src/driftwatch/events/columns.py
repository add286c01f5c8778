"""The columnar hot path: a batch of raw records -> per-model columns of valid predictions.

:func:`decode_batch` gives exactly what decoding each record with :class:`Decoder` would
(the same valid events with the same values, the same invalid records with the same
reasons), but without a Python object per event or per value on the common path:

1. every record is parsed by ``orjson.loads`` (one ``map`` over the batch);
2. each field is pulled out as one list per batch, checked with one ``set(map(type, ...))``
   per column, and numbers become float64 arrays in one ``np.array`` call (``None`` ->
   NaN: a missing value; orjson never yields a NaN, so NaN means missing and nothing else);
3. a record that deviates from the common shape in *any* way (not bytes, too large, not
   JSON, not an object, an unknown model, an integer id, an ISO timestamp, a value of
   another type, a timestamp out of range ...) is handed whole to the per-event decoder,
   which gives its exact reason, or a valid event that joins the columns at its place.

So the two paths cannot disagree on what is valid: the fast path accepts only records the
per-event rules accept, with values computed the same way (``float(int)`` and numpy's
int -> float64 conversion both round to nearest), and everything else *is* the per-event
path. ``tests/unit/events/test_columns.py`` checks it on random and mutated streams.

One difference, by design: the wall clock (for ``max_future_seconds`` and events without
any time) is read once per batch instead of once per record.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any, Union, cast

import msgspec
import numpy as np
import numpy.typing as npt
import orjson

from driftwatch.errors import InvalidEvent
from driftwatch.events.decode import (
    _MS,
    _NS,
    _US,
    MAX_VERSION_LENGTH,
    POOLED_VERSION,
    Decoder,
    _internal,
)
from driftwatch.events.schema import Label, ModelSchema, Prediction, category_key

FloatArray = npt.NDArray[np.float64]
log = logging.getLogger(__name__)

_NONE: type = type(None)
_NUMBER: frozenset[type] = frozenset({float, int})
_NUMBER_OR_NONE: frozenset[type] = frozenset({float, int, _NONE})
_CATEGORY_OR_NONE: frozenset[type] = frozenset({str, int, float, bool, _NONE})
_STR_OR_NONE: frozenset[type] = frozenset({str, _NONE})
_DICT: frozenset[type] = frozenset({dict})
#: The integers orjson returns as ``int`` (beyond them: ``float``).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


@dataclass(eq=False)
class PredictionColumns:
    """Valid predictions of one model, as columns, in record order.

    ``numerical[k]`` holds ``schema.numerical[k]`` for every event (NaN: missing);
    ``categorical[k]`` and ``segments[k]`` hold canonical category strings or None;
    ``predictions`` floats (regression) or category strings; ``scores`` float64 with NaN
    for an event without a score. ``rows`` are the events' positions in the decoded batch
    (what :class:`~driftwatch.sources.base.RecordBatch` index each came from)."""

    model: str
    ids: list[str]
    timestamps: FloatArray
    numerical: FloatArray  # (len(schema.numerical), n)
    categorical: list[list[str | None]]
    segments: list[list[str | None]]
    predictions: list[Any]
    scores: FloatArray
    rows: list[int] = field(default_factory=list)
    #: ``model_version`` of each event (None: none given); empty = none at all
    versions: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def score_list(self) -> list[float | None]:
        return [None if math.isnan(s) else s for s in self.scores.tolist()]

    def take(self, index: Sequence[int]) -> PredictionColumns:
        """The events at these positions (of this object), in that order."""
        idx = np.asarray(index, dtype=np.int64)
        return PredictionColumns(
            self.model,
            [self.ids[i] for i in index],
            self.timestamps[idx],
            np.ascontiguousarray(self.numerical[:, idx]),
            [[col[i] for i in index] for col in self.categorical],
            [[col[i] for i in index] for col in self.segments],
            [self.predictions[i] for i in index],
            self.scores[idx],
            [self.rows[i] for i in index] if self.rows else [],
            [self.versions[i] for i in index] if self.versions else [],
        )

    def version_list(self) -> list[str | None]:
        """Each event's ``model_version`` (None where it has none)."""
        return self.versions if self.versions else [None] * len(self.ids)

    @classmethod
    def concat(cls, parts: Sequence[PredictionColumns]) -> PredictionColumns:
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return cls(
            first.model,
            list(chain.from_iterable(p.ids for p in parts)),
            np.concatenate([p.timestamps for p in parts]),
            np.concatenate([p.numerical for p in parts], axis=1),
            [
                list(chain.from_iterable(p.categorical[k] for p in parts))
                for k in range(len(first.categorical))
            ],
            [
                list(chain.from_iterable(p.segments[k] for p in parts))
                for k in range(len(first.segments))
            ],
            list(chain.from_iterable(p.predictions for p in parts)),
            np.concatenate([p.scores for p in parts]),
            list(chain.from_iterable(p.rows for p in parts)),
            list(chain.from_iterable(p.version_list() for p in parts))
            if any(p.versions for p in parts)
            else [],
        )

    @classmethod
    def from_events(
        cls,
        model: str,
        numerical: Sequence[str],
        categorical: Sequence[str],
        segments: Sequence[str],
        events: Sequence[Prediction],
        rows: Sequence[int] = (),
    ) -> PredictionColumns:
        """Columns of decoded :class:`Prediction` objects (the per-event path's form)."""
        n = len(events)
        num = np.empty((len(numerical), n), dtype=np.float64)
        for k, name in enumerate(numerical):
            num[k] = [math.nan if (v := e.features.get(name)) is None else v for e in events]
        return cls(
            model,
            [e.id for e in events],
            np.array([e.timestamp for e in events], dtype=np.float64),
            num,
            [[e.features.get(name) for e in events] for name in categorical],  # type: ignore[misc]
            [[e.segments.get(name) for e in events] for name in segments],
            [e.prediction for e in events],
            np.array([math.nan if e.score is None else e.score for e in events], np.float64),
            list(rows),
            [e.model_version for e in events]
            if any(e.model_version is not None for e in events)
            else [],
        )


@dataclass
class DecodedBatch:
    """What :func:`decode_batch` found: valid predictions per model, labels (only when
    ``mixed``), and invalid records; positions index the input sequence."""

    columns: dict[str, PredictionColumns]
    labels: list[tuple[int, Label]]
    invalid: list[tuple[int, InvalidEvent]]


def _from_epoch(seconds: FloatArray) -> FloatArray:
    """:func:`driftwatch.events.decode._from_epoch`, vectorised (the same divisions)."""
    return np.where(
        seconds >= _MS,
        np.where(
            seconds >= _NS, seconds / 1e9, np.where(seconds >= _US, seconds / 1e6, seconds / 1e3)
        ),
        seconds,
    )


def _parse(values: Sequence[Any], max_bytes: int) -> tuple[list[Any], list[int], list[int]]:
    """orjson-parse every record that is plain bytes of an accepted size: (objects, their
    positions, positions left to the per-event decoder)."""
    try:
        if set(map(type, values)) <= {bytes} and max(map(len, values), default=0) <= max_bytes:
            return list(map(orjson.loads, values)), list(range(len(values))), []
    except orjson.JSONDecodeError:
        pass
    objs: list[Any] = []
    pos: list[int] = []
    slow: list[int] = []
    loads = orjson.loads
    for i, raw in enumerate(values):
        if type(raw) is not bytes or len(raw) > max_bytes:
            slow.append(i)
            continue
        try:
            objs.append(loads(raw))
        except orjson.JSONDecodeError:
            slow.append(i)
            continue
        pos.append(i)
    return objs, pos, slow


def _bad_where(values: list[Any], ok: frozenset[type]) -> set[int]:
    return {j for j, v in enumerate(values) if type(v) not in ok}


def _categories(values: list[Any], bad: set[int]) -> list[str | None]:
    """Canonical category strings (``_category``); rows with another type join ``bad``."""
    kinds = set(map(type, values))
    if kinds <= _STR_OR_NONE:
        return values
    if not kinds <= _CATEGORY_OR_NONE:
        bad |= _bad_where(values, _CATEGORY_OR_NONE)
        values = [v if type(v) in _CATEGORY_OR_NONE else None for v in values]
    if bool in kinds:  # True == 1 as a dict key: convert one by one
        return [v if v is None or type(v) is str else category_key(v) for v in values]
    # Equal numbers (1, 1.0) have the same key, so one conversion per distinct value.
    table = {v: v if v is None or type(v) is str else category_key(v) for v in set(values)}
    return list(map(table.__getitem__, values))


class _ModelColumns:
    """Builds one model's columns from its parsed objects (the fast path proper)."""

    def __init__(self, decoder: Decoder, schema: ModelSchema, now: float) -> None:
        self.decoder = decoder
        self.schema = schema
        self.now = now
        names = schema.numerical
        self.getter = itemgetter(*names) if len(names) > 1 else None

    def build(
        self, objs: list[dict[str, Any]], times: list[float]
    ) -> tuple[PredictionColumns, set[int]]:
        """Columns of ``objs`` and the set of their indices the fast path does not accept
        (their values in the columns are placeholders, to be dropped)."""
        schema = self.schema
        bad: set[int] = set()

        ids: list[Any] = [o.get("id") for o in objs]
        self.check_ids(ids, bad)
        stamps = self.timestamps([o.get("timestamp") for o in objs], times, bad)

        feats: list[Any] = [o.get("features") for o in objs]
        if not set(map(type, feats)) <= {dict}:
            odd = _bad_where(feats, _DICT)
            bad |= odd
            feats = [{} if j in odd else f for j, f in enumerate(feats)]

        numerical = self._numerical(feats, bad)
        categorical = [_categories([f.get(c) for f in feats], bad) for c in schema.categorical]
        segments = [_categories([f.get(c) for f in feats], bad) for c in schema.segments]

        predictions, scores = self.targets(
            [o.get("prediction") for o in objs], [o.get("score") for o in objs], bad
        )
        versions = self.versions([o.get("model_version") for o in objs], bad)

        cols = PredictionColumns(
            schema.name,
            ids,
            stamps,
            numerical,
            categorical,
            segments,
            predictions,
            scores,
            versions=versions,
        )
        return cols, bad

    @staticmethod
    def versions(values: list[Any], bad: set[int]) -> list[str | None]:
        """``model_version`` per event (empty list: none has one); odd ones join ``bad``."""
        kinds = set(map(type, values))
        if kinds == {type(None)}:
            return []
        if not kinds <= _STR_OR_NONE or not all(
            0 < len(v) <= MAX_VERSION_LENGTH and v != POOLED_VERSION
            for v in values
            if v is not None
        ):
            bad |= {
                j
                for j, v in enumerate(values)
                if v is not None
                and (
                    type(v) is not str
                    or not 0 < len(v) <= MAX_VERSION_LENGTH
                    or v == POOLED_VERSION
                )
            }
            return [v if type(v) is str else None for v in values]
        return values

    def check_ids(self, ids: list[Any], bad: set[int]) -> None:
        """Ids that are not strings of 1 to ``max_id_length`` characters join ``bad``."""
        limit = self.decoder.max_id_length
        if not (
            set(map(type, ids)) <= {str}
            and min(map(len, ids), default=1) > 0
            and max(map(len, ids), default=0) <= limit
        ):
            bad |= {j for j, v in enumerate(ids) if type(v) is not str or not 0 < len(v) <= limit}

    def targets(
        self, preds: list[Any], raw_scores: list[Any], bad: set[int]
    ) -> tuple[list[Any], FloatArray]:
        """Predictions (``_target``) and scores (NaN: none); odd ones join ``bad``."""
        schema = self.schema
        predictions: list[Any]
        if schema.task == "regression":
            if not set(map(type, preds)) <= _NUMBER:
                odd = _bad_where(preds, _NUMBER)
                bad |= odd
                preds = [0.0 if j in odd else v for j, v in enumerate(preds)]
            predictions = np.array(preds, dtype=np.float64).tolist()
        else:
            odd = {j for j, v in enumerate(preds) if v is None}
            bad |= odd
            kinds = set(map(type, preds))
            if int in kinds:  # orjson reads integers beyond 64 bits as floats
                ints = preds if kinds == {int} else [v for v in preds if type(v) is int]
                if min(ints) < _INT_MIN or max(ints) > _INT_MAX:
                    bad |= {
                        j
                        for j, v in enumerate(preds)
                        if type(v) is int and not _INT_MIN <= v <= _INT_MAX
                    }
            predictions = _categories(preds, bad)

        if not set(map(type, raw_scores)) <= _NUMBER_OR_NONE:
            odd = _bad_where(raw_scores, _NUMBER_OR_NONE)
            bad |= odd
            raw_scores = [None if j in odd else v for j, v in enumerate(raw_scores)]
        scores = np.array(raw_scores, dtype=np.float64)

        return predictions, scores

    def timestamps(self, raw_ts: list[Any], times: list[float], bad: set[int]) -> FloatArray:
        """Each event's time (``Decoder._timestamp``); out-of-range ones join ``bad``."""
        decoder = self.decoder
        if not set(map(type, raw_ts)) <= _NUMBER_OR_NONE:
            odd = _bad_where(raw_ts, _NUMBER_OR_NONE)
            bad |= odd
            raw_ts = [None if j in odd else v for j, v in enumerate(raw_ts)]
        stamps = _from_epoch(np.array(raw_ts, dtype=np.float64))
        absent = np.isnan(stamps)
        checked = ~absent
        if absent.any():
            record = np.array(times, dtype=np.float64)
            has_time = absent & (record > 0)  # `not default > 0` (NaN too) -> the wall clock
            stamps = np.where(absent, np.where(has_time, _from_epoch(record), self.now), stamps)
            checked |= has_time
        with np.errstate(invalid="ignore"):
            in_range = (decoder.min_timestamp <= stamps) & (
                stamps <= self.now + decoder.max_future_seconds
            )
        out_of_range = checked & ~in_range
        if out_of_range.any():
            bad |= set(np.flatnonzero(out_of_range).tolist())
        return stamps

    def _numerical(self, feats: list[dict[str, Any]], bad: set[int]) -> FloatArray:
        names = self.schema.numerical
        if not names:
            return np.empty((0, len(feats)), dtype=np.float64)
        rows: list[Any]
        if self.getter is None:
            rows = [(f.get(names[0]),) for f in feats]
        else:
            try:
                rows = list(map(self.getter, feats))
            except KeyError:  # some event lacks a feature: a missing value, still valid
                rows = [tuple(map(f.get, names)) for f in feats]
        if not set(map(type, chain.from_iterable(rows))) <= _NUMBER_OR_NONE:
            blank = (None,) * len(names)
            for j, row in enumerate(rows):
                if not set(map(type, row)) <= _NUMBER_OR_NONE:
                    bad.add(j)
                    rows[j] = blank
        return np.ascontiguousarray(np.array(rows, dtype=np.float64).T)


# -- the typed tier ---------------------------------------------------------------------

#: A tag no model can have (model names start with a letter or digit): with it the models'
#: event types always form a tagged union, whose decoder requires the ``model`` field.
_NO_MODEL = "\x00"


class _Typed:
    """msgspec decoders for records of *exactly* a model's shape: the keys ``model``,
    ``id`` (a string), ``features`` (an object of the model's features only, numbers or
    null for numerical ones, strings or null for categorical ones), ``prediction`` (a
    number for regression; an integer or a string for classification), and optional
    ``timestamp`` (a number) and ``score`` (a number). Types are checked in C while
    parsing, so no per-value check is left to do in Python.

    Anything else fails here and takes the orjson tier: unknown keys (msgspec skips
    them without checking their UTF-8 or number range as orjson does), another type,
    a missing key. What msgspec accepts and orjson reads differently is checked after:
    integers beyond 64 bits (orjson: floats), ids, time range."""

    def __init__(self, schemas: Mapping[str, ModelSchema]) -> None:
        self.models: dict[type, _ModelShape] = {}
        types: list[Any] = []
        for i, schema in enumerate(schemas.values()):
            try:
                shape = _ModelShape(schema, i)
            except ValueError:  # e.g. a feature name msgspec cannot rename to ('"', '\\')
                continue  # this model's records take the orjson tier
            if shape.event is None:
                continue
            self.models[shape.event] = shape
            types.append(shape.event)
        types.append(
            msgspec.defstruct("NoModel", [], tag_field="model", tag=_NO_MODEL, kw_only=True)
        )
        self.decode_one = msgspec.json.Decoder(Union[tuple(types)]).decode  # noqa: UP007

    def decode(
        self,
        decoder: Decoder,
        values: Sequence[bytes | None],
        times: Sequence[float],
        now: float,
        parts: dict[str, list[PredictionColumns]],
        slow: list[int],
    ) -> list[int]:
        """Decode what this tier can into ``parts`` (rows off by a check into ``slow``);
        returns the positions it could not decode."""
        decode = self.decode_one
        # any failure (DecodeError; RecursionError on deep nesting) leaves the record to
        # the next tier, which gives it its reason
        error = Exception
        pending: list[int] = []
        limit = decoder.max_bytes
        try:
            if not set(map(type, values)) <= {bytes}:
                raise TypeError
            raws = cast("Sequence[bytes]", values)
            if max(map(len, raws), default=0) > limit:
                raise ValueError  # too_large: left to the per-event decoder's reason
            events = list(map(decode, raws))
            pos: list[int] = list(range(len(values)))
        except error:
            events, pos = [], []
            for i, raw in enumerate(values):
                if type(raw) is not bytes or len(raw) > limit:
                    pending.append(i)
                    continue
                try:
                    events.append(decode(raw))
                    pos.append(i)
                except error:
                    pending.append(i)
        if not events:
            return pending
        kinds = list(map(type, events))
        distinct = set(kinds)
        for kind in distinct:
            shape = self.models.get(kind)
            if shape is None:  # the NoModel tag: cannot be sent, but is not a model
                pending.extend(p for p, k in zip(pos, kinds, strict=True) if k is kind)
                continue
            if len(distinct) == 1:
                members, rows = events, pos
            else:
                index = [j for j, k in enumerate(kinds) if k is kind]
                members, rows = [events[j] for j in index], [pos[j] for j in index]
            cols, bad = shape.columns(decoder, members, [times[i] for i in rows], now)
            cols.rows = rows
            if bad:
                slow.extend(rows[j] for j in bad)
                cols = cols.take([j for j in range(len(rows)) if j not in bad])
            if len(cols):
                parts.setdefault(shape.schema.name, []).append(cols)
        return sorted(pending) if len(distinct) > 1 else pending


class _ModelShape:
    """One model's event type for :class:`_Typed`, and how to read its columns."""

    def __init__(self, schema: ModelSchema, index: int) -> None:
        self.schema = schema
        numerical = schema.numerical
        strings = tuple(dict.fromkeys(schema.categorical + schema.segments))
        self.numerical = (
            attrgetter(*(f"n{k}" for k in range(len(numerical)))) if numerical else None
        )
        self.strings = {f: attrgetter(f"c{k}") for k, f in enumerate(strings)}
        self.event: Any = None
        if set(numerical) & set(schema.segments):
            return  # a numerical segment column is also read as a category: the orjson tier
        fields: list[tuple[str, Any, Any]] = [
            (f"n{k}", float | None, None) for k in range(len(numerical))
        ]
        fields += [(f"c{k}", str | None, None) for k in range(len(strings))]
        rename = {f"n{k}": f for k, f in enumerate(numerical)}
        rename |= {f"c{k}": f for k, f in enumerate(strings)}
        features = msgspec.defstruct(
            f"Features{index}", fields, rename=rename, kw_only=True, forbid_unknown_fields=True
        )
        target: Any = float if schema.task == "regression" else int | str
        self.event = msgspec.defstruct(
            f"Event{index}",
            [
                ("id", str),
                ("features", features),
                ("prediction", target),
                ("timestamp", float | None, None),
                ("score", float | None, None),
                ("model_version", str | None, None),
            ],
            tag_field="model",
            tag=schema.name,
            kw_only=True,
            forbid_unknown_fields=True,
        )

    def columns(
        self, decoder: Decoder, events: list[Any], times: list[float], now: float
    ) -> tuple[PredictionColumns, set[int]]:
        schema = self.schema
        reader = _ModelColumns(decoder, schema, now)
        bad: set[int] = set()
        ids = list(map(_ID, events))
        reader.check_ids(ids, bad)
        stamps = reader.timestamps(list(map(_TIMESTAMP, events)), times, bad)
        feats = list(map(_FEATURES, events))
        n = len(events)
        if self.numerical is None:
            numerical = np.empty((0, n), dtype=np.float64)
        else:
            rows = list(map(self.numerical, feats))
            matrix = np.array(rows, dtype=np.float64).reshape(n, -1)
            numerical = np.ascontiguousarray(matrix.T)
        categorical = [list(map(self.strings[c], feats)) for c in schema.categorical]
        segments = [list(map(self.strings[c], feats)) for c in schema.segments]
        predictions, scores = reader.targets(
            list(map(_PREDICTION, events)), list(map(_SCORE, events)), bad
        )
        versions = reader.versions(list(map(_VERSION, events)), bad)
        cols = PredictionColumns(
            schema.name,
            ids,
            stamps,
            numerical,
            categorical,
            segments,
            predictions,
            scores,
            versions=versions,
        )
        return cols, bad


_ID = attrgetter("id")
_TIMESTAMP = attrgetter("timestamp")
_FEATURES = attrgetter("features")
_PREDICTION = attrgetter("prediction")
_SCORE = attrgetter("score")
_VERSION = attrgetter("model_version")
#: Each decoder's typed tier, for the schemas it was built from (weak: it dies with it).
_TYPED: weakref.WeakKeyDictionary[Decoder, tuple[Mapping[str, ModelSchema], _Typed | None]] = (
    weakref.WeakKeyDictionary()
)


def _typed(decoder: Decoder) -> _Typed | None:
    """The decoder's typed tier, built once per set of schemas (None if it cannot be)."""
    cached = _TYPED.get(decoder)
    if cached is None or cached[0] is not decoder.schemas:
        tier: _Typed | None
        try:
            tier = _Typed(decoder.schemas)
        except Exception as exc:  # the other tiers still decode everything
            log.warning("typed decoding unavailable (%s); using the orjson tier", exc)
            tier = None
        cached = (decoder.schemas, tier)
        _TYPED[decoder] = cached
    return cached[1]


def decode_batch(
    decoder: Decoder,
    values: Sequence[bytes | None],
    times: Sequence[float],
    *,
    mixed: bool = False,
) -> DecodedBatch:
    """Decode a batch of prediction records (``mixed``: predictions and labels told apart
    by their fields, like :meth:`Decoder.event`). ``times`` are the records' own times
    (seconds), the default for events without a ``timestamp``. Total: never raises.

    Three tiers, each taking what the one before passed over: the typed tier (msgspec,
    records of exactly a model's shape), the orjson tier (any object; extra fields), and
    the per-event decoder (everything else, and every invalid record)."""
    try:
        return _decode_batch(decoder, values, times, mixed)
    except Exception as exc:  # a bug or an input no tier foresaw: per event, which is total
        kind = type(exc).__name__
        first = kind not in _LOGGED
        _LOGGED.add(kind)
        log.error(
            "batch decoding failed (%s); decoding this batch per event",
            kind,
            exc_info=exc if first else None,  # the traceback once per exception type
        )
        return decode_each(decoder, values, times, mixed=mixed)


#: Exception types whose traceback :func:`decode_batch` has logged already.
_LOGGED: set[str] = set()


def _decode_batch(
    decoder: Decoder, values: Sequence[bytes | None], times: Sequence[float], mixed: bool
) -> DecodedBatch:
    now = decoder.clock()
    parts: dict[str, list[PredictionColumns]] = {}
    slow: list[int] = []
    pending: Sequence[int] = range(len(values))
    typed = None if mixed else _typed(decoder)
    if typed is not None:
        pending = typed.decode(decoder, values, times, now, parts, slow)
    if pending:
        _orjson_tier(decoder, values, times, pending, now, mixed, parts, slow)
    columns = {model: _merge(found) for model, found in parts.items()}
    labels: list[tuple[int, Label]] = []
    invalid: list[tuple[int, InvalidEvent]] = []
    if slow:
        _decode_slow(decoder, values, times, sorted(slow), mixed, columns, labels, invalid)
    return DecodedBatch(columns, labels, invalid)


def _merge(found: list[PredictionColumns]) -> PredictionColumns:
    """One model's columns from several tiers, back in record order."""
    if len(found) == 1:
        return found[0]
    merged = PredictionColumns.concat(found)
    return merged.take(np.argsort(merged.rows, kind="stable").tolist())


def _orjson_tier(
    decoder: Decoder,
    values: Sequence[bytes | None],
    times: Sequence[float],
    positions: Sequence[int],
    now: float,
    mixed: bool,
    parts: dict[str, list[PredictionColumns]],
    slow: list[int],
) -> None:
    """Any JSON object of a known model: parsed by orjson, its fields pulled out as lists."""
    whole = len(positions) == len(values)
    subset = values if whole else [values[i] for i in positions]
    objs, local, rest = _parse(subset, decoder.max_bytes)
    pos = local if whole else [positions[k] for k in local]
    slow.extend(rest if whole else (positions[k] for k in rest))

    groups: dict[str, list[int]] = {}
    models = [o.get("model") if type(o) is dict else None for o in objs]
    if mixed:  # labels take the per-event path
        for k, o in enumerate(objs):
            if type(o) is dict and "label" in o and "prediction" not in o:
                models[k] = None
    try:
        distinct = set(models)
    except TypeError:  # an unhashable "model": sorted out per record below
        distinct = {object()}
    only = next(iter(distinct)) if len(distinct) == 1 else None
    if type(only) is str and only in decoder.schemas and set(map(type, objs)) <= {dict}:
        groups[only] = list(range(len(objs)))
    else:
        for k, m in enumerate(models):
            if type(m) is str and m in decoder.schemas and type(objs[k]) is dict:
                groups.setdefault(m, []).append(k)
            else:
                slow.append(pos[k])

    for model, members in groups.items():
        schema = decoder.schemas[model]
        group_objs = objs if len(members) == len(objs) else [objs[k] for k in members]
        rows = [pos[k] for k in members]
        cols, bad = _ModelColumns(decoder, schema, now).build(group_objs, [times[i] for i in rows])
        cols.rows = rows
        if bad:
            slow.extend(rows[j] for j in bad)
            cols = cols.take([j for j in range(len(rows)) if j not in bad])
        if len(cols):
            parts.setdefault(model, []).append(cols)


def decode_each(
    decoder: Decoder,
    values: Sequence[bytes | None],
    times: Sequence[float],
    *,
    mixed: bool = False,
) -> DecodedBatch:
    """:func:`decode_batch` done record by record with the per-event decoder only."""
    columns: dict[str, PredictionColumns] = {}
    labels: list[tuple[int, Label]] = []
    invalid: list[tuple[int, InvalidEvent]] = []
    _decode_slow(decoder, values, times, list(range(len(values))), mixed, columns, labels, invalid)
    return DecodedBatch(columns, labels, invalid)


def _decode_slow(
    decoder: Decoder,
    values: Sequence[bytes | None],
    times: Sequence[float],
    positions: list[int],
    mixed: bool,
    columns: dict[str, PredictionColumns],
    labels: list[tuple[int, Label]],
    invalid: list[tuple[int, InvalidEvent]],
) -> None:
    """The per-event decoder on the records the fast path passed over; valid predictions
    join their model's columns at their place in record order."""
    extra: dict[str, list[tuple[int, Prediction]]] = {}
    for i in positions:
        try:
            if mixed:
                event = decoder.event(values[i], times[i])
            else:
                event = decoder.prediction(values[i], times[i])
        except InvalidEvent as exc:
            invalid.append((i, exc))
            continue
        except Exception as exc:  # the decoder is total; this is the last line of defence
            invalid.append((i, _internal(exc)))
            continue
        if isinstance(event, Label):
            labels.append((i, event))
        else:
            extra.setdefault(event.model, []).append((i, event))
    for model, found in extra.items():
        schema = decoder.schemas[model]
        more = PredictionColumns.from_events(
            model,
            schema.numerical,
            schema.categorical,
            schema.segments,
            [e for _, e in found],
            [i for i, _ in found],
        )
        have = columns.get(model)
        columns[model] = more if have is None or not len(have) else _merge([have, more])
