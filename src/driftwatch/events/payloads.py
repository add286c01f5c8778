"""Model servers' payload logs, from a record to prediction events (CONTRACT section 12).

:mod:`driftwatch.events.cloudevents` parses one CloudEvent; here a request or response
becomes a *half* (JSON-able, so it can wait in a checkpoint) and a joined pair becomes one
:class:`~driftwatch.events.schema.Prediction` per instance, with ids ``<ce_id>/<i>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from driftwatch.errors import InvalidEvent
from driftwatch.events import cloudevents
from driftwatch.events.cloudevents import INVALID_SHAPE, CloudEvent, pair_id
from driftwatch.events.schema import ModelSchema, Prediction

#: The header naming the input record a re-keyed copy was made from (``repartition``):
#: ``b"<partition>:<offset>"``.
SOURCE_HEADER = "dw-src"
#: On a stub copied instead of a record too large to copy: the record's size in bytes.
TOO_LARGE_HEADER = "dw-too-large"

#: A Kafka record's headers (``sources.base.Headers``; events may not import sources).
Headers = Sequence[tuple[str, bytes | None]] | None


def source_of(headers: Headers) -> tuple[int, int] | None:
    """The input (partition, offset) a copy names in ``dw-src`` (None: not a copy)."""
    if not headers:
        return None
    for name, value in headers:
        if name == SOURCE_HEADER:
            try:
                part, sep, off = bytes(value or b"").decode("ascii").partition(":")
                return (int(part), int(off)) if sep else None
            except (ValueError, UnicodeDecodeError, TypeError):
                return None
    return None


def too_large(headers: Headers) -> int | None:
    """The original size a stub copy names in ``dw-too-large`` (None: not a stub)."""
    for name, value in headers or ():
        if name == TOO_LARGE_HEADER:
            try:
                return int(bytes(value or b"0"))
            except ValueError:
                return 0
    return None


def half_of(
    ce: CloudEvent, schema: ModelSchema, feature_order: Sequence[str] | None, at: float
) -> dict[str, Any]:
    """A request's rows or a response's predictions, validated now (so a bad half is
    rejected with its own record, not with its partner's), as a JSON-able dict."""
    if ce.kind == "request":
        return {"t": at, "rows": cloudevents.request_rows(ce.data, schema, feature_order)}
    targets, version = cloudevents.response_rows(ce.data, schema.task)
    return {"t": at, "preds": [[p, s] for p, s in targets], "v": version}


def joined_events(
    schema: ModelSchema, ce_id: str, request: dict[str, Any], response: dict[str, Any]
) -> list[Prediction]:
    """One prediction event per instance of a joined request and response; their counts
    must agree (``invalid_shape``). The event time is the request's."""
    rows, preds = request["rows"], response["preds"]
    if len(rows) != len(preds):
        raise InvalidEvent(
            INVALID_SHAPE,
            f"request {ce_id[:64]!r} has {len(rows)} instance(s), its response {len(preds)}",
        )
    at = float(request["t"])
    version = response.get("v")
    features = tuple(schema.features)
    out = []
    for i, (row, (pred, score)) in enumerate(zip(rows, preds, strict=True)):
        out.append(
            Prediction(
                schema.name,
                pair_id(ce_id, i),
                at,
                {f: row.get(f) for f in features},
                pred,
                score,
                {s: row.get(s) for s in schema.segments},
                version,
            )
        )
    return out
