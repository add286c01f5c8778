"""``driftwatch replay``: the run pipeline over a JSON-lines file, evaluated on event time.

Event time is the time of the newest *valid* event seen (validated by the same decoder
as the daemon's, so an invalid line -- unparseable, wrong-typed, or with a timestamp out
of range -- never moves it). It starts at the first valid event with a timestamp.
Evaluations happen every ``evaluation.interval_seconds`` of event time, on a grid that
starts there, and once more at the end; each prints one JSON line. When event time jumps
over several ticks (a gap in the data), they are coalesced into one evaluation at the
last of them, like the daemon's scheduler with ``coalesce=True``; so the number of
evaluations is at most one per valid event, and the run is linear in the input.

Events without a timestamp take the previous valid event's time; those before the first
one wait for it (up to :data:`MAX_HELD` lines; beyond that, and in a file without any
timestamp, they take the wall-clock time at the start of the replay). Timestamps more than
``kafka.max_future_seconds`` ahead of the wall clock (read once, at the start) are invalid
as in the daemon; history may be of any age from ``kafka.min_timestamp`` on.
Lines may be predictions or labels (a line with ``label`` and no ``prediction``); labels
age on event time too. Webhooks are not sent: the rule edges they would carry are
printed in ``notifications``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from driftwatch.app import build_pipeline
from driftwatch.config import Config
from driftwatch.errors import InvalidEvent
from driftwatch.monitor.notify import Notification
from driftwatch.monitor.results import Evaluation
from driftwatch.pipeline import Pipeline
from driftwatch.sources.base import Record
from driftwatch.sources.replay import read_records

#: Lines without a timestamp held (in memory) until the first valid event time.
MAX_HELD = 100_000


def _line(evaluation: Evaluation, notes: list[Notification]) -> dict[str, Any]:
    out = evaluation.to_dict()
    out["notifications"] = [n.body for n in notes]
    return out


def _missing_timestamp(exc: InvalidEvent) -> bool:
    return exc.reason == "missing_field" and exc.detail == "timestamp"


def replay(
    config: Config,
    records: Iterable[Record],
    emit: Callable[[dict[str, Any]], None],
    batch: int = 500,
    *,
    clock: Callable[[], float] = time.time,
    pipeline: Pipeline | None = None,
) -> Pipeline:
    """Replay ``records`` through ``pipeline`` (default: a new one built from ``config``),
    calling ``emit`` with each evaluation's line; returns the pipeline."""
    pipeline = build_pipeline(config) if pipeline is None else pipeline
    decoder = pipeline.decoder
    started = clock()
    # One wall-clock reading for the whole run: every line is judged against the same
    # "far future", here and again when the pipeline decodes it.
    decoder.clock = lambda: started
    interval = config.evaluation.interval_seconds
    origin: float | None = None  # the first valid event time: the evaluation grid's origin
    next_tick = 1  # the next evaluation is due at origin + next_tick * interval
    now = started  # event time: the newest valid event time (once origin is set)
    last: float | None = None  # the previous valid event time: the default for the next
    held: list[Record] = []  # lines without a timestamp, before the first valid time
    pending: list[Record] = []

    def flush() -> None:
        if pending:
            pipeline.apply(pending, now=now, mixed=True)
            pending.clear()

    def stamped(rec: Record, at: float) -> Record:
        return Record(rec.topic, rec.partition, rec.offset, rec.key, rec.value, at)

    def release(at: float) -> None:
        pending.extend(stamped(r, at) for r in held)
        held.clear()

    for rec in records:
        default = 0.0 if last is None else last  # 0: no time yet
        ts: float | None = None
        try:
            event = decoder.event(rec.value, default, require_timestamp=last is None)
            ts = event.timestamp
        except InvalidEvent as exc:
            if last is None and _missing_timestamp(exc):
                held.append(rec)
                if len(held) >= MAX_HELD:  # no timestamp in sight: start at the wall clock
                    last = started
                    release(started)
                continue
        if ts is not None and math.isfinite(ts):
            if origin is None:
                origin = now = ts
                release(ts)
            elif ts > now:
                now = ts
            last = ts
            if origin is not None and now >= origin + next_tick * interval:
                flush()  # the records before this one, then one (coalesced) evaluation
                k = max(next_tick, math.floor((now - origin) / interval))
                for ev, notes in pipeline.evaluate(origin + k * interval):
                    emit(_line(ev, notes))
                next_tick = k + 1
        pending.append(stamped(rec, default))
        if len(pending) >= batch:
            flush()
    release(started if last is None else last)
    flush()
    for ev, notes in pipeline.evaluate(now):
        emit(_line(ev, notes))
    return pipeline


def replay_file(
    config: Config,
    path: Path,
    emit: Callable[[dict[str, Any]], None],
    *,
    clock: Callable[[], float] = time.time,
) -> Pipeline:
    records = read_records(path, max_line_bytes=config.kafka.max_event_bytes)
    return replay(config, records, emit, clock=clock)
