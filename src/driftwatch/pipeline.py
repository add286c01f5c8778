"""Records in, notifications out: the part shared by ``driftwatch run`` and ``replay``.

decode -> ingest (under a short lock) -> evaluate window snapshots -> alert policy ->
durable outbox. It is built by ``driftwatch.app.build_pipeline`` from a config.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from driftwatch.detectors.policy import AlertPolicy, Edge, RuleState
from driftwatch.errors import InvalidEvent
from driftwatch.events.decode import Decoder
from driftwatch.events.schema import Label, Prediction
from driftwatch.monitor.model import ModelMonitor, evaluate_snapshot
from driftwatch.monitor.notify import Notification, notification
from driftwatch.monitor.results import RULES, Evaluation, Hysteresis
from driftwatch.monitor.telemetry import Telemetry
from driftwatch.sinks.outbox import Outbox
from driftwatch.sources.base import DeadLetters, Record
from driftwatch.state.checkpoint import ModelState

log = logging.getLogger(__name__)


@dataclass
class ModelAlerts:
    policy: AlertPolicy
    webhooks: list[str]
    states: dict[str, RuleState] = field(default_factory=lambda: {r: RuleState() for r in RULES})
    hysteresis: Hysteresis | None = None

    def state(self) -> dict[str, Any]:
        return {
            "rules": {r: dataclasses.asdict(s) for r, s in self.states.items()},
            "hysteresis": None if self.hysteresis is None else self.hysteresis.to_dict(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.states = {r: RuleState(**state["rules"].get(r, {})) for r in RULES}
        h = state["hysteresis"]
        self.hysteresis = None if h is None else Hysteresis.from_dict(h)

    def reset(self) -> None:
        self.states = {r: RuleState() for r in RULES}
        self.hysteresis = None


class Pipeline:
    """Everything between raw records and notifications. Thread-safe where it must be:
    ``apply`` runs on the poll loop, ``evaluate`` on the scheduler thread."""

    def __init__(
        self,
        monitors: dict[str, ModelMonitor],
        alerts: dict[str, ModelAlerts],
        decoder: Decoder,
        telemetry: Telemetry,
        outbox: Outbox | None = None,
        dead_letters: DeadLetters | None = None,
        on_notify: Callable[[], None] | None = None,
        label_topic: str | None = None,
    ) -> None:
        self.monitors = monitors
        self.alerts = alerts
        self.decoder = decoder
        self.telemetry = telemetry
        self.outbox = outbox
        self.dead_letters = dead_letters
        self.on_notify = on_notify
        self.label_topic = label_topic
        #: model -> the partition its events must arrive on (None: any; replay)
        self.router: Callable[[str], int] | None = None
        #: the models this replica owns and evaluates (None: all of them)
        self.owned: set[str] | None = None
        self._lock = threading.Lock()  # guards the monitors' windows and joins
        self._eval_lock = threading.Lock()  # one evaluation round at a time
        self._last: dict[str, Evaluation] = {}  # each model's previous evaluation (hysteresis)

    # -- ingest -----------------------------------------------------------------------------
    def _decode(self, rec: Record, mixed: bool) -> Prediction | Label:
        if mixed:
            return self.decoder.event(rec.value, rec.timestamp)
        if rec.topic == self.label_topic:
            return self.decoder.label(rec.value, rec.timestamp)
        return self.decoder.prediction(rec.value, rec.timestamp)

    def apply(
        self, records: Sequence[Record], now: float | None = None, mixed: bool = False
    ) -> int:
        """Decode, validate and ingest records; invalid ones are counted, dead-lettered, skipped.

        ``now`` (default: the clock) ages waiting labels; ``mixed`` tells predictions from
        labels by their fields instead of their topic (replay files).
        Returns the number of valid events applied.
        """
        now = time.time() if now is None else now
        predictions: dict[str, list[Prediction]] = defaultdict(list)
        labels: dict[str, list[Label]] = defaultdict(list)
        for rec in records:
            try:
                event = self._decode(rec, mixed)
            except InvalidEvent as exc:
                self._invalid(rec, exc.reason, exc.detail)
                continue
            if self.router is not None and self.router(event.model) != rec.partition:
                self._invalid(
                    rec, "wrong_partition", f"model {event.model} belongs on another partition"
                )
                continue
            if isinstance(event, Label):
                labels[event.model].append(event)
            else:
                predictions[event.model].append(event)
        applied = sum(self._ingest(m, batch) for m, batch in predictions.items())
        for model, batch in labels.items():
            with self._lock:
                self.monitors[model].ingest_labels(batch, now)
            self.telemetry.count_labels(model, len(batch))
            applied += len(batch)
        if labels:
            self._label_telemetry()
        return applied

    def _invalid(self, rec: Record, reason: str, detail: str) -> None:
        self.telemetry.count_invalid(reason)
        if self.dead_letters is not None:
            self.dead_letters.send(rec, reason, detail)

    def _ingest(self, model: str, events: list[Prediction]) -> int:
        monitor = self.monitors[model]
        with self._lock:
            missing_before = dict(monitor.missing)
            late_before = monitor.late_events
            monitor.ingest_batch(events)
            late = monitor.late_events - late_before
            missing = {f: n - missing_before[f] for f, n in monitor.missing.items()}
        self.telemetry.count_events(model, len(events), late)
        for feature, n in missing.items():
            if n:
                self.telemetry.count_missing(model, feature, n)
        return len(events)

    def _label_telemetry(self) -> None:
        for name, monitor in self.monitors.items():
            with self._lock:
                ls = monitor.label_stats
                stats = (
                    dict(monitor.join.dropped),
                    list(ls.delay_buckets),
                    ls.delay_sum,
                    len(monitor.join.labels),
                )
            self.telemetry.set_labels(name, *stats)

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, now: float) -> list[tuple[Evaluation, list[Notification]]]:
        """Evaluate every model on a snapshot; feed the alert policy; store notifications."""
        out = []
        with self._eval_lock:
            for monitor in self.monitors.values():
                if self.owned is not None and monitor.spec.name not in self.owned:
                    continue
                with self._lock:
                    monitor.expire_labels(now)
                    snap = monitor.snapshot()
                alerts = self.alerts[monitor.spec.name]
                evaluation = evaluate_snapshot(monitor, snap, now, alerts.hysteresis)
                alerts.hysteresis = evaluation.hysteresis
                out.append((evaluation, self._alert(evaluation, now)))
            self._label_telemetry()
        return out

    def _alert(self, evaluation: Evaluation, now: float) -> list[Notification]:
        alerts = self.alerts[evaluation.model]
        notes: list[Notification] = []
        for rule, breach in evaluation.breaches.items():
            state = alerts.states[rule]
            edge: Edge | None = alerts.policy.update(state, breach, now)
            if edge is not None:
                notes.append(notification(evaluation, rule, edge, state.firings))
        if notes and self.outbox is not None:
            for note in notes:
                body = orjson.dumps(note.body)
                for hook in alerts.webhooks:
                    self.outbox.add(note.id, hook, body, now)
                log.info("alert %s %s %s (id %s)", note.model, note.rule, note.type, note.id)
            if self.on_notify is not None:
                self.on_notify()
        self.telemetry.record(evaluation, {r: s.firing for r, s in alerts.states.items()})
        return notes

    # -- checkpoints ----------------------------------------------------------------------
    def capture(self, models: list[str]) -> tuple[dict[str, ModelState], dict[str, dict[str, Any]]]:
        """A consistent copy of these models' state and alert state (between two applies,
        between two evaluations)."""
        with self._eval_lock, self._lock:
            states = {m: self.monitors[m].state() for m in models}
            alerts = {m: self.alerts[m].state() for m in models}
        return states, alerts

    def alert_states(self, models: list[str]) -> dict[str, dict[str, Any]]:
        with self._eval_lock:
            return {m: self.alerts[m].state() for m in models}

    def restore(self, states: dict[str, ModelState], alerts: dict[str, dict[str, Any]]) -> None:
        """Restore models from a checkpoint; ValueError if a model's layout changed."""
        with self._eval_lock, self._lock:
            for name, (meta, arrays) in states.items():
                if name in self.monitors:
                    self.monitors[name].restore(meta, arrays)
            for name, state in alerts.items():
                if name in self.alerts:
                    self.alerts[name].restore(state)
        for name in states:
            if name in self.monitors:
                m = self.monitors[name]
                self.telemetry.restore_counts(
                    name, m.events_total, m.labels_total, m.late_events, m.missing
                )
        self._label_telemetry()

    def reset(self, models: list[str], owned: bool) -> None:
        """Empty these models: before restoring them (``owned``: export them from zero), or
        because their partition moved away (stop exporting them)."""
        with self._eval_lock, self._lock:
            for name in models:
                self.monitors[name].reset()
                self.alerts[name].reset()
        self.telemetry.forget(models)
        if owned:
            self.export_from_zero(models)

    def export_from_zero(self, models: list[str]) -> None:
        """Export these models' counters (every feature's too) at zero until events come."""
        for name in models:
            zeros = dict.fromkeys(self.monitors[name].spec.features, 0)
            self.telemetry.restore_counts(name, 0, 0, 0, zeros)

    def status(self) -> dict[str, Any]:
        snap = self.telemetry.snapshot()
        models: dict[str, Any] = {}
        for name in self.monitors:
            if self.owned is not None and name not in self.owned:
                continue
            ev = snap.evaluations.get(name)
            models[name] = {
                "evaluation": None if ev is None else ev.to_dict(),
                "alerts": {r: snap.alert_active.get((name, r), False) for r in RULES},
                "events_total": snap.events_total.get(name, 0),
                "labels_total": snap.labels_total.get(name, 0),
            }
        return {
            "models": models,
            "invalid_events_total": snap.invalid_total,
            "generated_at": time.time(),
        }
