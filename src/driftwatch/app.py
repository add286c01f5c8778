"""Builds the pipeline from a config, and runs records through it.

``Pipeline`` is shared by ``driftwatch run`` (Kafka) and ``driftwatch replay``
(a file): decode -> ingest (under a short lock) -> evaluate on snapshots ->
alert policy -> durable outbox.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from driftwatch.config import Config, ModelConfig
from driftwatch.detectors.policy import AlertPolicy, Edge, RuleState
from driftwatch.detectors.threshold import DriftRule
from driftwatch.errors import ConfigError, DriftwatchError, InvalidEvent
from driftwatch.events.decode import Decoder
from driftwatch.events.schema import ModelSchema, Prediction
from driftwatch.monitor.model import ModelMonitor, MonitorSpec, evaluate_snapshot
from driftwatch.monitor.notify import Notification, notification
from driftwatch.monitor.results import RULES, Evaluation
from driftwatch.monitor.telemetry import Telemetry
from driftwatch.sinks.outbox import Outbox
from driftwatch.sinks.webhook import WebhookTarget
from driftwatch.sources.base import DeadLetters, Record
from driftwatch.sources.reference import load_reference
from driftwatch.windows.reference import ReferenceProfile

log = logging.getLogger(__name__)


def build_monitor(model: ModelConfig) -> ModelMonitor:
    """Load a model's reference and build its monitor. Raises DriftwatchError on bad data."""
    frame = load_reference(model.name, model.reference)
    columns = {str(c): frame[c].to_numpy() for c in frame.columns}
    try:
        profile = ReferenceProfile.build(columns, dict(model.features), model.task)
    except ValueError as exc:
        raise DriftwatchError(
            f"models[{model.name}].reference: {model.reference.name}: {exc}"
        ) from None
    d = model.drift
    rule = DriftRule(
        method=d.method,
        threshold=d.threshold,
        min_events=d.min_events,
        categorical_threshold=d.categorical_threshold,
        prediction_threshold=d.effective_prediction_threshold,
    )
    spec = MonitorSpec(
        name=model.name,
        task=model.task,
        features=dict(model.features),
        rule=rule,
        window_events=model.window.events,
        window_seconds=model.window.seconds,
    )
    return ModelMonitor(spec, profile)


def webhook_targets(
    config: Config, environ: dict[str, str] | None = None
) -> dict[str, WebhookTarget]:
    """Resolve webhook secrets from the environment (never from the YAML)."""
    env = os.environ if environ is None else environ
    targets: dict[str, WebhookTarget] = {}
    problems: list[str] = []
    for name, hook in config.webhooks.items():
        secret = None
        if hook.secret_env:
            secret = env.get(hook.secret_env)
            if not secret:
                problems.append(
                    f"webhooks.{name}.secret_env: environment variable {hook.secret_env} is not set"
                )
        targets[name] = WebhookTarget(
            name,
            hook.url,
            hook.format,
            secret,
            hook.timeout_seconds,
            hook.max_attempts,
            hook.max_age_seconds,
        )
    if problems:
        raise ConfigError(problems)
    return targets


@dataclass
class ModelAlerts:
    policy: AlertPolicy
    webhooks: list[str]
    states: dict[str, RuleState] = field(default_factory=lambda: {r: RuleState() for r in RULES})


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
    ) -> None:
        self.monitors = monitors
        self.alerts = alerts
        self.decoder = decoder
        self.telemetry = telemetry
        self.outbox = outbox
        self.dead_letters = dead_letters
        self.on_notify = on_notify
        self._lock = threading.Lock()  # guards the monitors' windows
        self._eval_lock = threading.Lock()  # one evaluation round at a time

    @classmethod
    def from_config(
        cls,
        config: Config,
        outbox: Outbox | None = None,
        dead_letters: DeadLetters | None = None,
        on_notify: Callable[[], None] | None = None,
    ) -> Pipeline:
        monitors = {m.name: build_monitor(m) for m in config.models}
        alerts = {
            m.name: ModelAlerts(
                AlertPolicy(m.alerts.consecutive, m.alerts.cooldown_seconds), list(m.webhooks)
            )
            for m in config.models
        }
        schemas = {m.name: ModelSchema(m.name, m.task, dict(m.features)) for m in config.models}
        decoder = Decoder(schemas, config.kafka.max_event_bytes)
        telemetry = Telemetry(list(monitors), RULES)
        return cls(monitors, alerts, decoder, telemetry, outbox, dead_letters, on_notify)

    def apply(self, records: Sequence[Record]) -> int:
        """Decode, validate and ingest records; invalid ones are counted, dead-lettered, skipped.

        Returns the number of valid events applied.
        """
        by_model: dict[str, list[Prediction]] = defaultdict(list)
        decode = self.decoder.prediction
        for rec in records:
            try:
                event = decode(rec.value, rec.timestamp)
            except InvalidEvent as exc:
                self.telemetry.count_invalid(exc.reason)
                if self.dead_letters is not None:
                    self.dead_letters.send(rec, exc.reason, exc.detail)
                continue
            by_model[event.model].append(event)
        applied = 0
        for model, events in by_model.items():
            monitor = self.monitors[model]
            missing_before = dict(monitor.missing)
            with self._lock:
                late_before = monitor.late_events
                monitor.ingest_batch(events)
                late = monitor.late_events - late_before
            self.telemetry.count_events(model, len(events), late)
            for feature, n in monitor.missing.items():
                if n != missing_before[feature]:
                    self.telemetry.count_missing(model, feature, n - missing_before[feature])
            applied += len(events)
        return applied

    def evaluate(self, now: float) -> list[tuple[Evaluation, list[Notification]]]:
        """Evaluate every model on a snapshot; feed the alert policy; store notifications."""
        out = []
        with self._eval_lock:
            for monitor in self.monitors.values():
                with self._lock:
                    snap = monitor.snapshot()
                evaluation = evaluate_snapshot(monitor.spec, monitor.profile, snap, now)
                out.append((evaluation, self._alert(evaluation, now)))
        return out

    def _alert(self, evaluation: Evaluation, now: float) -> list[Notification]:
        alerts = self.alerts[evaluation.model]
        notes: list[Notification] = []
        for rule, breach in evaluation.breaches.items():
            edge: Edge | None = alerts.policy.update(alerts.states[rule], breach, now)
            if edge is not None:
                notes.append(notification(evaluation, rule, edge))
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

    def status(self) -> dict[str, Any]:
        snap = self.telemetry.snapshot()
        models: dict[str, Any] = {}
        for name in self.monitors:
            ev = snap.evaluations.get(name)
            models[name] = {
                "evaluation": None if ev is None else ev.to_dict(),
                "alerts": {r: snap.alert_active.get((name, r), False) for r in RULES},
                "events_total": snap.events_total.get(name, 0),
            }
        return {
            "models": models,
            "invalid_events_total": snap.invalid_total,
            "generated_at": time.time(),
        }
