"""Prometheus exposition (CONTRACT section 5): a custom collector on its own registry.

The only module that imports ``prometheus_client``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from driftwatch.events.decode import INVALID_REASONS
from driftwatch.monitor.telemetry import TelemetrySnapshot

OUTCOMES = ("success", "retry", "failure")


def _value(x: float | None) -> float:
    return math.nan if x is None else float(x)


class DriftwatchCollector(Collector):
    """Builds every driftwatch metric from one telemetry snapshot per scrape."""

    def __init__(self, snapshot: Callable[[], TelemetrySnapshot], webhooks: list[str]) -> None:
        self._snapshot = snapshot
        self._webhooks = webhooks

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        yield from self._drift(s)
        yield from self._counters(s)

    def _drift(self, s: TelemetrySnapshot) -> Iterator[Metric]:
        psi = GaugeMetricFamily(
            "driftwatch_feature_psi",
            "PSI of the current window against the reference",
            labels=["model", "feature"],
        )
        ks_stat = GaugeMetricFamily(
            "driftwatch_feature_ks_statistic",
            "KS statistic of a numerical feature",
            labels=["model", "feature"],
        )
        ks_p = GaugeMetricFamily(
            "driftwatch_feature_ks_pvalue",
            "KS p-value of a numerical feature",
            labels=["model", "feature"],
        )
        drift = GaugeMetricFamily(
            "driftwatch_feature_drift",
            "1 when the feature's drift rule breaches, else 0",
            labels=["model", "feature"],
        )
        pred = GaugeMetricFamily(
            "driftwatch_prediction_psi", "PSI of the predictions' distribution", labels=["model"]
        )
        ratio = GaugeMetricFamily(
            "driftwatch_model_drifted_features_ratio",
            "Share of features that breach",
            labels=["model"],
        )
        window = GaugeMetricFamily(
            "driftwatch_window_events", "Prediction events in the current window", labels=["model"]
        )
        last = GaugeMetricFamily(
            "driftwatch_last_evaluation_timestamp_seconds",
            "When the model was last evaluated",
            labels=["model"],
        )
        for model, ev in sorted(s.evaluations.items()):
            for f in ev.features:
                psi.add_metric([model, f.feature], _value(f.psi))
                drift.add_metric([model, f.feature], 1.0 if f.drift else 0.0)
                if f.kind == "numerical":
                    ks_stat.add_metric([model, f.feature], _value(f.ks_statistic))
                    ks_p.add_metric([model, f.feature], _value(f.ks_pvalue))
            if ev.prediction_psi is not None:
                pred.add_metric([model], _value(ev.prediction_psi))
            ratio.add_metric([model], ev.drifted_ratio)
            window.add_metric([model], float(ev.window_events))
            last.add_metric([model], ev.evaluated_at)
        alert = GaugeMetricFamily(
            "driftwatch_alert_active", "1 while a rule fires", labels=["model", "rule"]
        )
        for (model, rule), on in sorted(s.alert_active.items()):
            alert.add_metric([model, rule], 1.0 if on else 0.0)
        yield from (psi, ks_stat, ks_p, drift, pred, ratio, window, last, alert)

    def _counters(self, s: TelemetrySnapshot) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "driftwatch_events", "Valid prediction events consumed", labels=["model"]
        )
        for model, n in sorted(s.events_total.items()):
            events.add_metric([model], n)
        labels = CounterMetricFamily(
            "driftwatch_labels", "Valid label events consumed", labels=["model"]
        )
        for model, n in sorted(s.labels_total.items()):
            labels.add_metric([model], n)
        invalid = CounterMetricFamily(
            "driftwatch_invalid_events", "Invalid records skipped", labels=["reason"]
        )
        for reason in sorted(set(INVALID_REASONS) | set(s.invalid_total)):
            invalid.add_metric([reason], s.invalid_total.get(reason, 0))
        missing = CounterMetricFamily(
            "driftwatch_missing_feature_values",
            "Prediction events lacking a feature's value",
            labels=["model", "feature"],
        )
        for (model, feature), n in sorted(s.missing_total.items()):
            missing.add_metric([model, feature], n)
        late = CounterMetricFamily(
            "driftwatch_late_events",
            "Events older than their time window on arrival (dropped)",
            labels=["model"],
        )
        for model, n in sorted(s.late_total.items()):
            late.add_metric([model], n)
        deliveries = CounterMetricFamily(
            "driftwatch_webhook_deliveries",
            "Webhook delivery attempts by outcome",
            labels=["webhook", "outcome"],
        )
        for hook in self._webhooks:
            for outcome in OUTCOMES:
                deliveries.add_metric([hook, outcome], s.deliveries_total.get((hook, outcome), 0))
        pending = GaugeMetricFamily(
            "driftwatch_webhook_pending", "Notifications waiting for delivery", labels=["webhook"]
        )
        for hook in self._webhooks:
            pending.add_metric([hook], s.webhook_pending.get(hook, 0))
        yield from (events, labels, invalid, missing, late, deliveries, pending)


class PrometheusExporter:
    """The daemon's registry: the collector plus the evaluation-duration histogram."""

    def __init__(self, snapshot: Callable[[], TelemetrySnapshot], webhooks: list[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DriftwatchCollector(snapshot, webhooks))
        self.evaluation_duration = Histogram(
            "driftwatch_evaluation_duration_seconds",
            "Time of one evaluation round",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )

    def observe_evaluation(self, seconds: float) -> None:
        self.evaluation_duration.observe(seconds)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """Exposition bytes and content type for an HTTP ``Accept`` header."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
