"""Thread-safe counters and the latest evaluations, read by the exporter and /status."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from driftwatch.monitor.results import Evaluation


@dataclass(frozen=True)
class TelemetrySnapshot:
    events_total: dict[str, int]
    labels_total: dict[str, int]
    invalid_total: dict[str, int]
    missing_total: dict[tuple[str, str], int]
    late_total: dict[str, int]
    deliveries_total: dict[tuple[str, str], int]
    evaluations: dict[str, Evaluation]
    alert_active: dict[tuple[str, str], bool]
    webhook_pending: dict[str, int] = field(default_factory=dict)
    labels: dict[str, LabelTelemetry] = field(default_factory=dict)
    last_poll: float | None = None
    assigned_partitions: int = 0
    outbox_failures: int = 0
    duplicate_notifications: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    broker_up: bool | None = None
    broker_contact_age: float | None = None


@dataclass(frozen=True)
class LabelTelemetry:
    """A model's label counters: dropped by reason, delay histogram, labels waiting."""

    dropped: dict[str, int]
    delay_buckets: list[int]
    delay_sum: float
    pending: int


class Telemetry:
    """Everything the daemon counts. Writers are the poll loop, the evaluator and the
    webhook sender; readers take a consistent :class:`TelemetrySnapshot`."""

    def __init__(self, models: list[str], rules: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self.events_total: Counter[str] = Counter(dict.fromkeys(models, 0))
        self.labels_total: Counter[str] = Counter(dict.fromkeys(models, 0))
        self.invalid_total: Counter[str] = Counter()
        self.missing_total: Counter[tuple[str, str]] = Counter()
        self.late_total: Counter[str] = Counter(dict.fromkeys(models, 0))
        self.deliveries_total: Counter[tuple[str, str]] = Counter()
        self.evaluations: dict[str, Evaluation] = {}
        self.alert_active: dict[tuple[str, str], bool] = {
            (m, r): False for m in models for r in rules
        }
        self.webhook_pending: dict[str, int] = {}
        self.labels: dict[str, LabelTelemetry] = {}
        self.last_poll: float | None = None
        self.assigned_partitions = 0
        self.outbox_failures = 0
        self.duplicate_notifications = 0
        self.dead_letters: dict[str, int] = {}
        self.broker_up: bool | None = None
        self.broker_contact_age: float | None = None

    def count_outbox_failure(self) -> None:
        with self._lock:
            self.outbox_failures += 1

    def count_duplicate_notification(self) -> None:
        with self._lock:
            self.duplicate_notifications += 1

    def set_dead_letters(self, counts: dict[str, int]) -> None:
        """The dead-letter producer's counters: sent, failed, lost."""
        with self._lock:
            self.dead_letters = dict(counts)

    def set_broker(self, up: bool, contact_age: float | None) -> None:
        with self._lock:
            self.broker_up = up
            self.broker_contact_age = contact_age

    def count_events(self, model: str, n: int, late: int = 0) -> None:
        with self._lock:
            self.events_total[model] += n
            if late:
                self.late_total[model] += late

    def consumer_alive(self, now: float, partitions: int) -> None:
        with self._lock:
            self.last_poll = now
            self.assigned_partitions = partitions

    def count_labels(self, model: str, n: int) -> None:
        with self._lock:
            self.labels_total[model] += n

    def set_labels(
        self,
        model: str,
        dropped: dict[str, int],
        buckets: list[int],
        delay_sum: float,
        pending: int,
    ) -> None:
        with self._lock:
            self.labels[model] = LabelTelemetry(dropped, buckets, delay_sum, pending)

    def restore_counts(
        self, model: str, events: int, labels: int, late: int, missing: dict[str, int]
    ) -> None:
        """Counters as of a restored checkpoint, so they continue where its owner left off."""
        with self._lock:
            self.events_total[model] = events
            self.labels_total[model] = labels
            self.late_total[model] = late
            for feature, n in missing.items():
                self.missing_total[(model, feature)] = n

    def forget(self, models: list[str]) -> None:
        """Stop exporting these models (another replica owns them now)."""
        with self._lock:
            for m in models:
                self.evaluations.pop(m, None)
                self.labels.pop(m, None)
                for counter in (self.events_total, self.labels_total, self.late_total):
                    counter.pop(m, None)
                for key in [k for k in self.missing_total if k[0] == m]:
                    del self.missing_total[key]
                for key in [k for k in self.alert_active if k[0] == m]:
                    del self.alert_active[key]

    def count_invalid(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.invalid_total[reason] += n

    def count_missing(self, model: str, feature: str, n: int) -> None:
        with self._lock:
            self.missing_total[(model, feature)] += n

    def count_delivery(self, webhook: str, outcome: str) -> None:
        with self._lock:
            self.deliveries_total[(webhook, outcome)] += 1

    def set_pending(self, pending: dict[str, int]) -> None:
        with self._lock:
            self.webhook_pending = dict(pending)

    def record(self, evaluation: Evaluation, active: dict[str, bool]) -> None:
        with self._lock:
            self.evaluations[evaluation.model] = evaluation
            for rule, on in active.items():
                self.alert_active[(evaluation.model, rule)] = on

    def snapshot(self) -> TelemetrySnapshot:
        with self._lock:
            return TelemetrySnapshot(
                dict(self.events_total),
                dict(self.labels_total),
                dict(self.invalid_total),
                dict(self.missing_total),
                dict(self.late_total),
                dict(self.deliveries_total),
                dict(self.evaluations),
                dict(self.alert_active),
                dict(self.webhook_pending),
                dict(self.labels),
                self.last_poll,
                self.assigned_partitions,
                self.outbox_failures,
                self.duplicate_notifications,
                dict(self.dead_letters),
                self.broker_up,
                self.broker_contact_age,
            )
