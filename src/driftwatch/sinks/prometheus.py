"""Prometheus exposition (CONTRACT section 5): a custom collector on its own registry.

The only module that imports ``prometheus_client``.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from driftwatch import __version__
from driftwatch.events.decode import INVALID_REASONS
from driftwatch.monitor.model import DELAY_BUCKETS
from driftwatch.monitor.quality import quantile_label
from driftwatch.monitor.telemetry import TelemetrySnapshot

if TYPE_CHECKING:
    from driftwatch.reload import ReloadStatus

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
        yield from self._quality(s)
        yield from self._performance(s)
        yield from self._versions(s)
        yield from self._labels(s)
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

    def _quality(self, s: TelemetrySnapshot) -> Iterator[Metric]:
        """Data quality and summaries per feature (CONTRACT section 9). The quantiles are
        summary-typed (a ``quantile`` label is reserved for summaries: ``promtool check
        metrics``), with quantile samples only: no ``_sum`` / ``_count``, which a window
        would not keep monotonic."""
        mf = ["model", "feature"]
        missing = GaugeMetricFamily(
            "driftwatch_feature_missing_ratio",
            "Share of the window's events where the feature is absent or null",
            labels=mf,
        )
        out_of_range = GaugeMetricFamily(
            "driftwatch_feature_out_of_range_ratio",
            "Numerical feature: share of the window's values below the reference minimum "
            "or above its maximum",
            labels=mf,
        )
        new_category = GaugeMetricFamily(
            "driftwatch_feature_new_category_ratio",
            "Categorical feature: share of the window's values in categories the reference "
            "never had",
            labels=mf,
        )
        mean = GaugeMetricFamily(
            "driftwatch_feature_mean",
            "Numerical feature: the window's mean, from its fine bins (error bound in /status); "
            "NaN while values lie outside the reference's range (unbounded: see "
            "driftwatch_feature_out_of_range_ratio)",
            labels=mf,
        )
        quantile = Metric(
            "driftwatch_feature_quantile",
            "Numerical feature: the window's quantiles, from its fine bins (error at most one "
            "fine bin's width; per quantile in /status); NaN where the quantile falls outside "
            "the reference's range (unbounded)",
            "summary",
        )
        ref_mean = GaugeMetricFamily(
            "driftwatch_feature_reference_mean",
            "Numerical feature: the reference's mean",
            labels=mf,
        )
        ref_quantile = Metric(
            "driftwatch_feature_reference_quantile",
            "Numerical feature: the reference's quantiles (exact)",
            "summary",
        )
        for model, ev in sorted(s.evaluations.items()):
            for f, fq in ev.quality.items():
                key = [model, f]
                missing.add_metric(key, fq.missing_ratio)
                if fq.new_category_ratio is not None:
                    new_category.add_metric(key, fq.new_category_ratio)
                if fq.kind != "numerical":
                    continue
                out_of_range.add_metric(key, _value(fq.out_of_range_ratio))
                # a figure whose error is unbounded (values out of the reference's range:
                # read as its min / max) would look plausible and be wrong: NaN instead
                bound = fq.mean_error_bound
                bounded = bound is not None and math.isfinite(bound)
                mean.add_metric(key, _value(fq.mean) if bounded else math.nan)
                ref_mean.add_metric(key, _value(fq.reference_mean))
                window_quantiles = {
                    q: v if math.isfinite(fq.quantile_error_bounds.get(q, math.inf)) else math.nan
                    for q, v in fq.quantiles.items()
                }
                for family, values in (
                    (quantile, window_quantiles),
                    (ref_quantile, fq.reference_quantiles),
                ):
                    for q, v in values.items():
                        labels = {"model": model, "feature": f, "quantile": quantile_label(q)}
                        family.add_sample(family.name, labels, v)
        yield from (missing, out_of_range, new_category, mean, quantile, ref_mean, ref_quantile)

    def _performance(self, s: TelemetrySnapshot) -> Iterator[Metric]:
        cur = GaugeMetricFamily(
            "driftwatch_model_performance",
            "Performance over the window's labelled predictions",
            labels=["model", "metric"],
        )
        ref = GaugeMetricFamily(
            "driftwatch_model_performance_reference",
            "The same metric on the reference data",
            labels=["model", "metric"],
        )
        labeled = GaugeMetricFamily(
            "driftwatch_window_labeled_events",
            "Prediction events in the window with a joined label",
            labels=["model"],
        )
        coverage = GaugeMetricFamily(
            "driftwatch_model_label_coverage_ratio",
            "Share of the window's predictions that have a label",
            labels=["model"],
        )
        estimated = GaugeMetricFamily(
            "driftwatch_model_performance_estimated",
            "Performance estimated from the window's scores alone (calibrated on the reference)",
            labels=["model", "metric"],
        )
        scored = GaugeMetricFamily(
            "driftwatch_window_scored_events",
            "Prediction events in the window with a score (those the estimate covers)",
            labels=["model"],
        )
        seg_perf = GaugeMetricFamily(
            "driftwatch_segment_performance",
            "Performance of one segment value's labelled predictions",
            labels=["model", "segment", "value", "metric"],
        )
        seg_psi = GaugeMetricFamily(
            "driftwatch_segment_feature_psi",
            "PSI of one segment value's window against that value's reference rows",
            labels=["model", "segment", "value", "feature"],
        )
        seg_events = GaugeMetricFamily(
            "driftwatch_segment_window_events",
            "Prediction events of one segment value in the window",
            labels=["model", "segment", "value"],
        )
        for model, ev in sorted(s.evaluations.items()):
            if ev.performance_metric is not None:
                for metric, value in ev.performance.items():
                    cur.add_metric([model, metric], value)
                for metric, value in ev.performance_reference.items():
                    ref.add_metric([model, metric], value)
                labeled.add_metric([model], float(ev.labeled_events))
                coverage.add_metric([model], ev.label_coverage)
            if ev.performance_estimated:
                for metric, value in ev.performance_estimated.items():
                    estimated.add_metric([model, metric], value)
                scored.add_metric([model], float(ev.scored_events))
            for seg in ev.segments:
                key = [model, seg.segment, seg.value]
                seg_events.add_metric(key, float(seg.events))
                for feature, psi in seg.feature_psi.items():
                    seg_psi.add_metric([*key, feature], psi)
                for metric, value in seg.performance.items():
                    seg_perf.add_metric([*key, metric], value)
        yield from (cur, ref, labeled, coverage, estimated, scored, seg_perf, seg_psi, seg_events)

    def _versions(self, s: TelemetrySnapshot) -> Iterator[Metric]:
        """Per model version in the window (CONTRACT section 9); ``__other__`` pools the
        versions beyond ``max_versions``."""
        events = GaugeMetricFamily(
            "driftwatch_version_window_events",
            "Prediction events of one model version in the window",
            labels=["model", "version"],
        )
        perf = GaugeMetricFamily(
            "driftwatch_version_performance",
            "Performance over one model version's labelled predictions in the window",
            labels=["model", "version", "metric"],
        )
        psi = GaugeMetricFamily(
            "driftwatch_version_prediction_psi",
            "PSI of one model version's predictions against the reference",
            labels=["model", "version"],
        )
        for model, ev in sorted(s.evaluations.items()):
            for v in ev.versions:
                events.add_metric([model, v.version], float(v.events))
                if v.labeled_events:
                    for metric, value in v.performance.items():
                        perf.add_metric([model, v.version, metric], value)
                if v.prediction_psi is not None:
                    psi.add_metric([model, v.version], _value(v.prediction_psi))
        yield from (events, perf, psi)

    def _labels(self, s: TelemetrySnapshot) -> Iterator[Metric]:
        delay = HistogramMetricFamily(
            "driftwatch_label_delay_seconds",
            "Label time minus prediction time, at the join",
            labels=["model"],
        )
        late = CounterMetricFamily(
            "driftwatch_labels_late",
            "Labels dropped because their prediction did not come within the label TTL",
            labels=["model"],
        )
        dropped = CounterMetricFamily(
            "driftwatch_labels_dropped",
            "Labels dropped for another reason: duplicate, capacity (max_pending)",
            labels=["model", "reason"],
        )
        pending = GaugeMetricFamily(
            "driftwatch_labels_pending", "Labels waiting for their prediction", labels=["model"]
        )
        for model, lt in sorted(s.labels.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*DELAY_BUCKETS, math.inf), lt.delay_buckets, strict=True):
                cumulative += n
                buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
            delay.add_metric([model], buckets, lt.delay_sum)
            late.add_metric([model], lt.dropped.get("late", 0))
            for reason in ("duplicate", "capacity"):
                dropped.add_metric([model, reason], lt.dropped.get(reason, 0))
            pending.add_metric([model], lt.pending)
        yield from (delay, late, dropped, pending)

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
        poll = GaugeMetricFamily(
            "driftwatch_consumer_last_poll_timestamp_seconds",
            "When the consumer last returned from a poll (stalls show as an old value)",
        )
        if s.last_poll is not None:
            poll.add_metric([], s.last_poll)
        assigned = GaugeMetricFamily(
            "driftwatch_consumer_assigned_partitions",
            "Prediction-topic partitions this replica owns",
        )
        assigned.add_metric([], s.assigned_partitions)
        yield from (events, labels, invalid, missing, late, deliveries, pending, poll, assigned)
        yield from self._faults(s)

    def _faults(self, s: TelemetrySnapshot) -> Iterator[Metric]:
        """What is wrong around the daemon: broker contact, dead letters, the outbox."""
        up = GaugeMetricFamily(
            "driftwatch_kafka_broker_up",
            "1 while the consumer hears from the group coordinator, 0 when it has not for "
            "longer than the session timeout (broker down or unreachable)",
        )
        if s.broker_up is not None:
            up.add_metric([], 1.0 if s.broker_up else 0.0)
        age = GaugeMetricFamily(
            "driftwatch_kafka_broker_contact_age_seconds",
            "Seconds since the consumer last heard from the broker (coordinator heartbeat)",
        )
        if s.broker_contact_age is not None:
            age.add_metric([], s.broker_contact_age)
        dead = CounterMetricFamily(
            "driftwatch_dead_letters",
            "Dead-letter copies by outcome: sent (acknowledged), failed (an attempt that "
            "failed, retried), lost (dropped beyond the retry bound)",
            labels=["outcome"],
        )
        for outcome in ("sent", "failed", "lost"):
            dead.add_metric([outcome], s.dead_letters.get(outcome, 0))
        outbox = CounterMetricFamily(
            "driftwatch_outbox_write_failures",
            "Evaluations whose notifications could not be written to the outbox (the alert "
            "state was rolled back and the edge is derived again next time)",
        )
        outbox.add_metric([], s.outbox_failures)
        dup = CounterMetricFamily(
            "driftwatch_notifications_duplicate",
            "Notifications re-derived after a restore that were already in the outbox "
            "(stored and sent once)",
        )
        dup.add_metric([], s.duplicate_notifications)
        yield from (up, age, dead, outbox, dup)


class BuildInfoCollector(Collector):
    """``driftwatch_build_info``: always 1, labelled with the running version. Its absence
    is what the ``DriftwatchAbsent`` alert looks for, and ``group_left`` joins can add the
    version to any other series."""

    def __init__(self, version: str = __version__, python: str | None = None) -> None:
        self._labels = [version, python or platform.python_version()]

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "driftwatch_build_info",
            "Always 1: the driftwatch version and the Python running it",
            labels=["version", "python"],
        )
        info.add_metric(self._labels, 1.0)
        yield info


class PrometheusExporter:
    """The daemon's registry: the collector plus the evaluation-duration histogram."""

    def __init__(self, snapshot: Callable[[], TelemetrySnapshot], webhooks: list[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DriftwatchCollector(snapshot, webhooks))
        self.registry.register(BuildInfoCollector())
        self.evaluation_duration = Histogram(
            "driftwatch_evaluation_duration_seconds",
            "Time of one evaluation round",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.delivery_duration = Histogram(
            "driftwatch_webhook_delivery_duration_seconds",
            "Time of one webhook delivery attempt, whatever its outcome",
            labelnames=["webhook"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        for hook in webhooks:
            self.delivery_duration.labels(webhook=hook)

    def observe_delivery(self, webhook: str, seconds: float) -> None:
        self.delivery_duration.labels(webhook=webhook).observe(seconds)

    def observe_evaluation(self, seconds: float) -> None:
        self.evaluation_duration.observe(seconds)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """Exposition bytes and content type for an HTTP ``Accept`` header."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class ReloadCollector(Collector):
    """``driftwatch_config_*`` metrics, registered beside the main collector."""

    def __init__(self, status: Callable[[], ReloadStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        s = self._status()
        ok = GaugeMetricFamily(
            "driftwatch_config_last_reload_success",
            "1 if the config in use was loaded by the last attempt (at start or on SIGHUP), "
            "0 if the last SIGHUP reload was refused and the previous config keeps running",
        )
        ok.add_metric([], 1.0 if s.success else 0.0)
        at = GaugeMetricFamily(
            "driftwatch_config_last_reload_success_timestamp_seconds",
            "When the config in use was loaded (at start or by a SIGHUP reload)",
        )
        at.add_metric([], s.last_success_at)
        failures = CounterMetricFamily(
            "driftwatch_config_reload_failures",
            "SIGHUP reloads refused: invalid config, unusable reference or secret, or a key "
            "that cannot change while running",
        )
        failures.add_metric([], s.failures)
        yield from (ok, at, failures)


@dataclass(frozen=True)
class IngestSnapshot:
    """Figures of the unkeyed-topic and payload-log paths (CONTRACT section 12)."""

    #: per owned model: request/response halves waiting for their other half (cloudevents)
    pairs_pending: dict[str, int] | None = None
    #: per owned model: halves dropped, by reason (expired, capacity, duplicate)
    pairs_dropped: dict[str, dict[str, int]] | None = None
    #: per owned model: re-keyed copies skipped as already applied (``repartition``)
    copies_skipped: dict[str, int] | None = None
    #: this replica's re-keying stage: records copied, of which unrouted; retried polls
    copied: tuple[int, int, int] | None = None
    #: ``POST /v1/cloudevents`` answers by status code
    http: dict[int, int] | None = None


class IngestCollector(Collector):
    """``driftwatch_payload_*``, ``driftwatch_copies_*``, ``driftwatch_repartition_*`` and
    ``driftwatch_ingest_*``: exported only where the configuration uses them."""

    def __init__(self, snapshot: Callable[[], IngestSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        if s.pairs_pending is not None:
            pending = GaugeMetricFamily(
                "driftwatch_payload_pairs_pending",
                "Request or response payload logs waiting for their other half",
                labels=["model"],
            )
            for model, n in sorted(s.pairs_pending.items()):
                pending.add_metric([model], n)
            yield pending
        if s.pairs_dropped is not None:
            dropped = CounterMetricFamily(
                "driftwatch_payload_pairs_dropped",
                "Payload-log halves dropped: expired (no other half within "
                "kafka.pair_ttl_seconds), capacity (kafka.pair_max_pending), duplicate",
                labels=["model", "reason"],
            )
            for model, reasons in sorted(s.pairs_dropped.items()):
                for reason in ("expired", "capacity", "duplicate"):
                    dropped.add_metric([model, reason], reasons.get(reason, 0))
            yield dropped
        if s.copies_skipped is not None:
            skipped = CounterMetricFamily(
                "driftwatch_copies_skipped",
                "Re-keyed records skipped because they had been applied already (copied "
                "again after a crash, an outage or a rebalance of the re-keying stage)",
                labels=["model"],
            )
            for model, n in sorted(s.copies_skipped.items()):
                skipped.add_metric([model], n)
            yield skipped
        if s.copied is not None:
            copied, unrouted, retries = s.copied
            c = CounterMetricFamily(
                "driftwatch_repartition_copied",
                "Records this replica copied from kafka.prediction_topic to the re-keyed topic",
            )
            c.add_metric([], copied)
            u = CounterMetricFamily(
                "driftwatch_repartition_unrouted",
                "Of those, records whose model could not be told (copied to partition 0, "
                "counted invalid there)",
            )
            u.add_metric([], unrouted)
            r = CounterMetricFamily(
                "driftwatch_repartition_retries",
                "Polls whose copies were not all acknowledged and were copied again",
            )
            r.add_metric([], retries)
            yield from (c, u, r)
        if s.http is not None:
            req = CounterMetricFamily(
                "driftwatch_ingest_requests",
                "POST /v1/cloudevents requests by status code (202: acknowledged by the broker)",
                labels=["code"],
            )
            for code in sorted({202, 400, 401, 413, 503} | set(s.http)):
                req.add_metric([str(code)], s.http.get(code, 0))
            yield req
