"""``driftwatch replay``: the run pipeline over a JSON-lines file, evaluated on event time.

Evaluations happen every ``evaluation.interval_seconds`` of *event* time (the
timestamps in the file), and once more at the end; each prints one JSON line.
Events without a timestamp take the previous event's. Lines may be predictions or
labels (a line with ``label`` and no ``prediction``); labels age on event time too.
Webhooks are not sent:
the rule edges they would carry are printed in ``notifications``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from driftwatch.app import build_pipeline
from driftwatch.config import Config
from driftwatch.errors import InvalidEvent
from driftwatch.events.decode import parse_timestamp
from driftwatch.monitor.notify import Notification
from driftwatch.monitor.results import Evaluation
from driftwatch.pipeline import Pipeline
from driftwatch.sources.base import Record
from driftwatch.sources.replay import read_records


def _line(evaluation: Evaluation, notes: list[Notification]) -> dict[str, Any]:
    out = evaluation.to_dict()
    out["notifications"] = [n.body for n in notes]
    return out


def _event_time(value: bytes | None) -> float | None:
    try:
        obj = orjson.loads(value or b"")
        ts = obj.get("timestamp") if isinstance(obj, dict) else None
        return None if ts is None else parse_timestamp(ts)
    except (orjson.JSONDecodeError, InvalidEvent):
        return None


def replay(
    config: Config,
    records: Iterable[Record],
    emit: Callable[[dict[str, Any]], None],
    batch: int = 500,
) -> Pipeline:
    pipeline = build_pipeline(config)
    interval = config.evaluation.interval_seconds
    next_eval: float | None = None
    clock = 0.0
    pending: list[Record] = []

    def flush() -> None:
        if pending:
            pipeline.apply(pending, now=clock, mixed=True)
            pending.clear()

    for rec in records:
        ts = _event_time(rec.value)
        if ts is not None and math.isfinite(ts):
            clock = ts
        if next_eval is None:
            next_eval = clock + interval
        while clock >= next_eval:
            flush()
            for ev, notes in pipeline.evaluate(next_eval):
                emit(_line(ev, notes))
            next_eval += interval
        pending.append(Record(rec.topic, rec.partition, rec.offset, rec.key, rec.value, clock))
        if len(pending) >= batch:
            flush()
    flush()
    for ev, notes in pipeline.evaluate(clock):
        emit(_line(ev, notes))
    return pipeline


def replay_file(config: Config, path: Path, emit: Callable[[dict[str, Any]], None]) -> Pipeline:
    return replay(config, read_records(path), emit)
