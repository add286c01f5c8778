"""``driftwatch backtest``: how well the rules find known change points in a history
(CONTRACT section 8).

The history is a JSON-lines file of events (CONTRACT section 3), replayed exactly as
``driftwatch replay`` does (:func:`driftwatch.replay.replay`: the same pipeline, evaluated
on event time every ``evaluation.interval_seconds`` and once at the end). Each model and
rule is then scored against the file's known change points, beside a no-skill baseline.

Change points. A change point is the first event after a known change, marked by
``"change": true`` in its JSON object (only the JSON ``true``), or by its ``id`` being listed
in the ``--changes`` file (one id per line, blank lines ignored, surrounding whitespace
stripped; or a JSON array of ids, when the file's first non-blank character is ``[``).
Both may be combined. Only *valid* predictions count, as the pipeline decides (the same
decoder, the same wall-clock reading, the same default timestamps as the replay); labels
(a line with ``label`` and no ``prediction``) and invalid lines are neither change points
nor counted. Every valid prediction whose id is listed is a change point of its own
model (an id two models use marks both). A change point's *index* is the number of valid
predictions of its model before it in the file, its *time* is its timestamp (an event
without one takes the previous valid event's, as in the replay). Listed ids that match no
valid prediction are reported (a warning on stderr).

Scoring, per model and rule (``feature_drift`` and ``dataset_drift`` always;
``prediction_drift`` only if some evaluation of the model had a prediction PSI;
``performance``, ``data_quality``, ``version_regression`` and ``estimated_performance``
only if the model has that rule), over that model's evaluations in order, each with its
``events_total`` (the model's valid predictions ingested by then):

* an *alarm* is a rising edge of the rule's breach: an evaluation where it breaches and
  did not at the model's previous evaluation (or that is the model's first);
* a change point's *segment* is the evaluations that have seen it but not the next one:
  ``index < events_total <= next index`` (the last change point's segment runs to the
  end). It is *detected* by the first evaluation of its segment if the rule breaches
  there (already firing: no new alarm needed), else by the first alarm in its segment;
  with no such evaluation it is *missed*;
* the *delay* of a detection is ``events_total - index`` events and
  ``evaluated_at - time`` seconds (mean and max over the detected change points);
* a *false alarm* is every alarm that is not a detection: before the first change point,
  after a detection in the same segment, and every alarm of a history without changes.

The *baseline* fires at the detector's own alarm rate ``r = alarms / evaluations``
without looking at the data, deterministically: at the evaluations ``k`` (from 0) where
``floor((k + 1) r) > floor(k r)``, each firing a one-evaluation pulse and an alarm, so it
has exactly as many alarms as the detector (none if the detector had none); it is scored
the same way. A detector that does better than its baseline finds the changes sooner, or
more of them, with the same number of alarms.

Outputs: a plain-text table (:func:`format_table`) or one JSON document
(:meth:`Report.to_dict`), with ``-`` / ``null`` where a figure is undefined (no
detection: no delay).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from driftwatch.app import build_pipeline
from driftwatch.config import Config
from driftwatch.errors import DriftwatchError, InvalidEvent
from driftwatch.events.decode import Decoder
from driftwatch.events.schema import Label, Prediction
from driftwatch.monitor.results import RULES
from driftwatch.replay import MAX_HELD, replay
from driftwatch.sources.base import Record
from driftwatch.sources.replay import read_records

#: Rules scored only for a model that configures them.
OPTIONAL_RULES = ("performance", "data_quality", "version_regression", "estimated_performance")

DETECTORS = ("driftwatch", "baseline")
COLUMNS = (
    "model",
    "rule",
    "detector",
    "evaluations",
    "alarms",
    "false alarms",
    "changes",
    "missed",
    "mean delay (events)",
    "max delay (events)",
    "mean delay (s)",
    "max delay (s)",
)
_BOM = b"\xef\xbb\xbf"


# -- scoring (pure) -------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """A known change point of one model: the first event after the change."""

    index: int  #: the model's valid predictions before it
    timestamp: float
    id: str = ""


@dataclass(frozen=True)
class Step:
    """One evaluation of one model, for one rule."""

    events: int  #: the model's valid predictions ingested by then (``events_total``)
    at: float  #: ``evaluated_at``
    firing: bool  #: the rule breached
    alarm: bool  #: an alarm was raised here


@dataclass(frozen=True)
class Detection:
    change: int  #: position of the change point (in index order)
    step: int  #: position of the detecting evaluation
    events: int  #: delay in events
    seconds: float  #: delay in seconds


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


@dataclass(frozen=True)
class Figures:
    """One detector's score for one model and rule."""

    evaluations: int
    alarms: int
    false_alarms: int
    changes: int
    detections: tuple[Detection, ...]

    @property
    def missed(self) -> int:
        return self.changes - len(self.detections)

    @property
    def mean_delay_events(self) -> float | None:
        return _mean([d.events for d in self.detections])

    @property
    def max_delay_events(self) -> int | None:
        return max((d.events for d in self.detections), default=None)

    @property
    def mean_delay_seconds(self) -> float | None:
        return _mean([d.seconds for d in self.detections])

    @property
    def max_delay_seconds(self) -> float | None:
        return max((d.seconds for d in self.detections), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alarms": self.alarms,
            "false_alarms": self.false_alarms,
            "detected": len(self.detections),
            "missed": self.missed,
            "mean_delay_events": _round(self.mean_delay_events),
            "max_delay_events": self.max_delay_events,
            "mean_delay_seconds": _round(self.mean_delay_seconds),
            "max_delay_seconds": _round(self.max_delay_seconds),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def rising_edges(firing: Sequence[bool]) -> list[bool]:
    """Where each breach starts: true where ``firing`` is, and was not just before."""
    return [f and (k == 0 or not firing[k - 1]) for k, f in enumerate(firing)]


def steps(points: Iterable[tuple[int, float, bool]]) -> list[Step]:
    """A detector's steps from its evaluations' ``(events_total, evaluated_at, breach)``:
    its alarms are the rising edges of the breach."""
    pts = list(points)
    alarms = rising_edges([p[2] for p in pts])
    return [Step(e, at, f, a) for (e, at, f), a in zip(pts, alarms, strict=True)]


def baseline(detector: Sequence[Step]) -> list[Step]:
    """The no-skill baseline at ``detector``'s alarm rate ``r = a / n``: a one-evaluation
    pulse (and alarm) at each evaluation ``k`` where ``floor((k+1) r) > floor(k r)``
    (in integers, so exactly ``a`` of them)."""
    n = len(detector)
    a = sum(s.alarm for s in detector)
    out = []
    for k, s in enumerate(detector):
        fire = (k + 1) * a // n > k * a // n
        out.append(Step(s.events, s.at, fire, fire))
    return out


def score(evaluations: Sequence[Step], changes: Sequence[Change]) -> Figures:
    """Score one detector's evaluations (in order) against one model's change points (any
    order; one per index). See the module docstring for the definitions."""
    by_index: dict[int, Change] = {}
    for c in changes:
        by_index.setdefault(c.index, c)
    ordered = [by_index[i] for i in sorted(by_index)]
    detections: list[Detection] = []
    detecting: set[int] = set()  # the alarms that are detections
    k = 0
    for j, change in enumerate(ordered):
        upper = ordered[j + 1].index if j + 1 < len(ordered) else math.inf
        while k < len(evaluations) and evaluations[k].events <= change.index:
            k += 1
        hit: int | None = None
        if k < len(evaluations) and evaluations[k].events <= upper:
            if evaluations[k].firing:  # already firing (or raised here)
                hit = k
            else:
                m = k + 1
                while m < len(evaluations) and evaluations[m].events <= upper:
                    if evaluations[m].alarm:
                        hit = m
                        break
                    m += 1
        if hit is None:
            continue
        step = evaluations[hit]
        if step.alarm:
            detecting.add(hit)
        detections.append(Detection(j, hit, step.events - change.index, step.at - change.timestamp))
    alarms = sum(s.alarm for s in evaluations)
    return Figures(
        len(evaluations), alarms, alarms - len(detecting), len(ordered), tuple(detections)
    )


# -- change points ----------------------------------------------------------------------
def read_change_ids(path: Path) -> list[str]:
    """The ids listed in a ``--changes`` file: one a line (blank lines ignored), or a JSON
    array of strings or integers."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DriftwatchError(f"--changes {path}: cannot read it ({exc})") from None
    if text.lstrip().startswith("["):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise DriftwatchError(f"--changes {path}: not a JSON array ({exc})") from None
        ids = []
        for i, v in enumerate(doc):
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise DriftwatchError(
                    f"--changes {path}: item {i} is a {type(v).__name__}, not an event id"
                )
            ids.append(str(v))
        return ids
    return [line.strip() for line in text.splitlines() if line.strip()]


def _flagged(raw: bytes | None) -> bool:
    """Whether a (valid) record's JSON object has ``"change": true``."""
    if raw is None or (b"change" not in raw and b"\\u" not in raw):  # \\u: an escaped key
        return False
    try:
        obj = orjson.loads(bytes(raw).removeprefix(_BOM))
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("change") is True


@dataclass
class ChangeScan:
    changes: dict[str, list[Change]]  #: per model, in index order
    matched: set[str]  #: the listed ids that marked a change


def find_changes(
    decoder: Decoder, records: Iterable[Record], ids: Collection[str] = (), *, started: float
) -> ChangeScan:
    """The change points of a history, decoding it as :func:`~driftwatch.replay.replay`
    does (``started``: its wall-clock reading; ``decoder.clock`` should return it)."""
    wanted = frozenset(ids)
    counts: dict[str, int] = {}
    changes: dict[str, list[Change]] = {}
    matched: set[str] = set()
    last: float | None = None  # the previous valid event time (replay's default)
    held = 0  # lines without a timestamp before the first valid time (replay holds them)
    untimed: list[tuple[str, int]] = []  # their changes: (model, position), time to come

    def stamp(at: float) -> None:
        for model, pos in untimed:
            changes[model][pos] = dataclasses.replace(changes[model][pos], timestamp=at)
        untimed.clear()

    for rec in records:
        if untimed and last is not None:
            stamp(last)
        event: Prediction | Label | None
        waiting = False  # a line the replay holds until the first valid time
        try:
            event = decoder.event(
                rec.value, 0.0 if last is None else last, require_timestamp=last is None
            )
        except InvalidEvent as exc:
            if not (last is None and exc.reason == "missing_field" and exc.detail == "timestamp"):
                continue
            held += 1
            try:  # valid or not whatever time it is stamped with
                event = decoder.event(rec.value, 0.0)
                waiting = True
            except InvalidEvent:
                event = None
            if held >= MAX_HELD:  # the replay starts at the wall clock
                last = started
        else:
            if event.timestamp is not None:
                last = event.timestamp
        if not isinstance(event, Prediction):
            continue
        index = counts.get(event.model, 0)
        counts[event.model] = index + 1
        listed = event.id in wanted
        if listed:
            matched.add(event.id)
        if listed or _flagged(rec.value):
            found = changes.setdefault(event.model, [])
            if waiting:
                untimed.append((event.model, len(found)))
            found.append(Change(index, event.timestamp, event.id))
    stamp(started if last is None else last)
    return ChangeScan(changes, matched)


# -- the backtest -------------------------------------------------------------------------
@dataclass(frozen=True)
class Recorded:
    """One evaluation line of the replay, with the model's ``events_total`` then."""

    model: str
    evaluated_at: float
    events: int
    breaches: Mapping[str, bool]
    prediction_psi: bool  #: the evaluation had a prediction PSI


@dataclass(frozen=True)
class Row:
    model: str
    rule: str
    driftwatch: Figures
    baseline: Figures

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "rule": self.rule,
            "evaluations": self.driftwatch.evaluations,
            "changes": self.driftwatch.changes,
            "driftwatch": self.driftwatch.to_dict(),
            "baseline": self.baseline.to_dict(),
        }


def score_models(
    models: Mapping[str, Collection[str]],
    recorded: Sequence[Recorded],
    changes: Mapping[str, Sequence[Change]],
) -> list[Row]:
    """Rows per model (``models``: name -> its optional rules configured, ``performance``
    and ``data_quality``, in output order) and rule (in :data:`RULES` order), the
    detector's and its baseline's."""
    rows = []
    for model, optional in models.items():
        evals = [r for r in recorded if r.model == model]
        found = changes.get(model, ())
        for rule in RULES:
            if rule in OPTIONAL_RULES and rule not in optional:
                continue
            if rule == "prediction_drift" and not any(r.prediction_psi for r in evals):
                continue
            detector = steps((r.events, r.evaluated_at, bool(r.breaches[rule])) for r in evals)
            rows.append(Row(model, rule, score(detector, found), score(baseline(detector), found)))
    return rows


@dataclass
class Report:
    rows: list[Row]
    changes: dict[str, list[Change]]
    #: ids listed in ``--changes`` that match no valid prediction
    unmatched: list[str]
    #: invalid lines skipped, per reason
    invalid: dict[str, int]
    #: the replay's evaluations, as scored
    evaluations: list[Recorded]

    def to_dict(self) -> dict[str, Any]:
        return {"models": [r.to_dict() for r in self.rows]}


def backtest(
    config: Config,
    path: Path,
    change_ids: Collection[str] = (),
    *,
    clock: Callable[[], float] = time.time,
) -> Report:
    """Replay the history at ``path`` and score every model's rules against its change
    points (``"change": true`` lines, and the events whose id is in ``change_ids``)."""
    started = clock()
    pipeline = build_pipeline(config)
    pipeline.decoder.clock = lambda: started
    limit = config.kafka.max_event_bytes
    scan = find_changes(
        pipeline.decoder, read_records(path, max_line_bytes=limit), change_ids, started=started
    )
    recorded: list[Recorded] = []
    monitors = pipeline.monitors

    def emit(line: dict[str, Any]) -> None:
        model = line["model"]
        recorded.append(
            Recorded(
                model,
                float(line["evaluated_at"]),
                monitors[model].events_total,
                dict(line["breaches"]),
                line["prediction_psi"] is not None,
            )
        )

    replay(
        config,
        read_records(path, max_line_bytes=limit),
        emit,
        clock=lambda: started,
        pipeline=pipeline,
    )
    models = {
        m.name: {
            rule
            for rule, section in (
                ("performance", m.performance),
                ("data_quality", m.quality),
                ("version_regression", m.versions.regression),
                (
                    "estimated_performance",
                    m.performance if m.performance and m.performance.estimate else None,
                ),
            )
            if section is not None
        }
        for m in config.models
    }
    rows = score_models(models, recorded, scan.changes)
    unmatched = [i for i in dict.fromkeys(change_ids) if i not in scan.matched]
    invalid = dict(pipeline.telemetry.snapshot().invalid_total)
    return Report(rows, scan.changes, unmatched, invalid, recorded)


# -- output -------------------------------------------------------------------------------
def _cell(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_table(report: Report) -> str:
    """The plain-text table: one line per model, rule and detector."""
    lines: list[tuple[str, ...]] = [COLUMNS]
    for row in report.rows:
        for name, f in (("driftwatch", row.driftwatch), ("baseline", row.baseline)):
            lines.append(
                (
                    row.model,
                    row.rule,
                    name,
                    str(f.evaluations),
                    str(f.alarms),
                    str(f.false_alarms),
                    str(f.changes),
                    str(f.missed),
                    _cell(f.mean_delay_events, 1),
                    _cell(f.max_delay_events, 0),
                    _cell(f.mean_delay_seconds, 1),
                    _cell(f.max_delay_seconds, 1),
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    text = 3  # model, rule, detector: left-aligned; the figures right-aligned

    def fmt(line: tuple[str, ...]) -> str:
        cells = [
            c.ljust(w) if i < text else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(lines[0]), rule, *(fmt(line) for line in lines[1:])]) + "\n"
