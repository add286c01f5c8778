"""Builds driftwatch's objects from a config: the only place (with ``cli``) that reads one.

Code below receives built objects (monitors, rules, targets), never dicts or os.environ.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from driftwatch.config import Config, KafkaConfig, ModelConfig
from driftwatch.detectors.policy import AlertPolicy
from driftwatch.detectors.recent import RecentRule
from driftwatch.detectors.threshold import DriftRule, PerformanceRule, QualityRule, VersionRule
from driftwatch.errors import ConfigError, DriftwatchError
from driftwatch.events.decode import Decoder
from driftwatch.events.schema import ModelSchema, category_key, is_missing
from driftwatch.monitor.estimated import build_estimator
from driftwatch.monitor.model import ModelMonitor, MonitorSpec
from driftwatch.monitor.performance import PerformanceLayout, positive_class
from driftwatch.monitor.results import RULES
from driftwatch.monitor.segments import Segment
from driftwatch.monitor.telemetry import Telemetry
from driftwatch.pipeline import ModelAlerts, PayloadFormat, Pipeline
from driftwatch.sinks.outbox import Outbox
from driftwatch.sinks.webhook import WebhookTarget, secret_problem, token_problem
from driftwatch.sources.base import DeadLetters
from driftwatch.sources.reference import load_reference
from driftwatch.stats.performance import LOWER_IS_BETTER
from driftwatch.windows.reference import NumericalBins, ReferenceProfile


def build_monitor(
    model: ModelConfig, labels: bool = True, kafka: KafkaConfig | None = None
) -> ModelMonitor:
    """Load a model's reference and build its monitor. Raises DriftwatchError on bad data.

    ``labels``: labels arrive (``kafka.label_topic``); without them the measured
    ``performance`` rule is not built (``performance.estimate`` still is)."""
    frame = load_reference(model.name, model.reference)
    columns = {str(c): frame[c].to_numpy() for c in frame.columns}
    where = f"models[{model.name}].reference: {model.reference.name}"
    try:
        profile = ReferenceProfile.build(columns, dict(model.features), model.task)
        segments = []
        first = 1
        for col in model.segments:
            seg = Segment.build(col, columns, profile, model.max_segment_values, first)
            segments.append(seg)
            first += len(seg.values)
    except ValueError as exc:
        raise DriftwatchError(f"{where}: {exc}") from None
    layout = _performance_layout(model, columns, profile)
    reference_perf = layout.reference(columns)
    estimator = build_estimator(layout.score_bins, columns, layout.positive, _key, model.name)
    p = model.performance
    perf_rule = estimated_rule = None
    if p is not None and p.estimate:
        if estimator is None:
            raise DriftwatchError(
                f"{where}: performance.estimate needs a score column and a label column "
                "with two classes (binary classification)"
            )
        estimated_rule = PerformanceRule(
            p.metric, p.max_drop, p.min_labels, False, model.alerts.resolve_ratio
        )
    if p is not None and (labels or not p.estimate):
        if p.metric not in reference_perf:
            needs = (
                "label, prediction and score" if p.metric == "roc_auc" else "label and prediction"
            )
            raise DriftwatchError(f"{where}: performance.metric {p.metric} needs {needs} columns")
        perf_rule = PerformanceRule(
            p.metric,
            p.max_drop,
            p.min_labels,
            p.metric in LOWER_IS_BETTER,
            model.alerts.resolve_ratio,
        )
    r = model.versions.regression
    version_rule = None
    if r is not None:
        if r.metric not in layout.metrics:
            raise DriftwatchError(
                f"{where}: versions.regression.metric {r.metric} needs a score column "
                "(roc_auc is computed from scores)"
            )
        version_rule = VersionRule(
            r.metric,
            r.max_drop,
            r.min_labels,
            r.metric in LOWER_IS_BETTER,
            model.alerts.resolve_ratio,
        )
    d = model.drift
    rule = DriftRule(
        method=d.method,
        threshold=d.threshold,
        min_events=d.min_events,
        categorical_threshold=d.categorical_threshold,
        prediction_threshold=d.effective_prediction_threshold,
        share=d.share,
        resolve_ratio=model.alerts.resolve_ratio,
        correction=d.correction if d.method == "ks" else "none",
        ks_min_statistic=d.ks_min_statistic,
        recent=RecentRule(d.recent.enabled, d.recent.min_events, d.recent.alpha, d.recent.min_psi),
    )
    q = model.quality
    quality_rule = (
        None
        if q is None
        else QualityRule(
            q.max_missing_ratio,
            q.max_out_of_range_ratio,
            q.max_new_category_ratio,
            q.min_events,
            model.alerts.resolve_ratio,
        )
    )
    spec = MonitorSpec(
        name=model.name,
        task=model.task,
        features=dict(model.features),
        rule=rule,
        window_events=model.window.events,
        window_seconds=model.window.seconds,
        performance=perf_rule,
        segments=tuple(model.segments),
        max_segment_values=model.max_segment_values,
        label_ttl_seconds=p.label_ttl_seconds if p else 86_400.0,
        max_pending=p.max_pending if p else 1_000_000,
        quality=quality_rule,
        max_versions=model.versions.max_versions,
        versions=version_rule,
        estimated=estimated_rule,
        pair_ttl_seconds=kafka.pair_ttl_seconds if kafka else 600.0,
        pair_max_pending=kafka.pair_max_pending if kafka else 20_000,
    )
    return ModelMonitor(spec, profile, layout, segments, reference_perf if p else {}, estimator)


def _key(value: object) -> str | None:
    return None if is_missing(value) else category_key(value)


def _performance_layout(
    model: ModelConfig, columns: dict[str, Any], profile: ReferenceProfile
) -> PerformanceLayout:
    if model.task == "regression":
        return PerformanceLayout("regression")
    source = columns.get("label", columns.get("prediction", []))
    positive = positive_class([category_key(v) for v in source if not is_missing(v)])
    score_bins = profile.prediction if profile.prediction_source == "score" else None
    assert score_bins is None or isinstance(score_bins, NumericalBins)
    return PerformanceLayout("classification", positive, score_bins)


def webhook_targets(
    config: Config, environ: dict[str, str] | None = None
) -> dict[str, WebhookTarget]:
    """Resolve webhook secrets from the environment (never from the YAML) and check them:
    a signing secret that cannot sign, or a token or user name that cannot be sent, is a
    ConfigError naming the key (never echoing the value)."""
    env = os.environ if environ is None else environ
    targets: dict[str, WebhookTarget] = {}
    problems: list[str] = []
    checks: dict[str, Callable[[str], str | None]] = {
        "secret_env": secret_problem,
        "token_env": token_problem,
        "username_env": lambda v: "a basic-auth user name cannot contain ':'" if ":" in v else None,
    }

    def from_env(name: str, key: str, var: str | None) -> str | None:
        if var is None:
            return None
        value = env.get(var)
        if not value:
            problems.append(f"webhooks.{name}.{key}: environment variable {var} is not set")
        elif key in checks and (problem := checks[key](value)) is not None:
            problems.append(f"webhooks.{name}.{key}: environment variable {var}: {problem}")
        return value

    for name, hook in config.webhooks.items():
        url = hook.url.rstrip("/")
        if hook.format == "airflow" and hook.dag_id:
            url = f"{url}/api/v1/dags/{hook.dag_id}/dagRuns"
        elif hook.format == "github" and hook.repository:
            url = f"{url}/repos/{hook.repository}/dispatches"
        targets[name] = WebhookTarget(
            name=name,
            url=url,
            format=hook.format,
            secret=from_env(name, "secret_env", hook.secret_env),
            timeout_seconds=hook.timeout_seconds,
            max_attempts=hook.max_attempts,
            max_age_seconds=hook.max_age_seconds,
            backoff_initial_seconds=hook.backoff_initial_seconds,
            backoff_max_seconds=hook.backoff_max_seconds,
            token=from_env(name, "token_env", hook.token_env),
            username=from_env(name, "username_env", hook.username_env),
            password=from_env(name, "password_env", hook.password_env),
        )
    if problems:
        raise ConfigError(problems)
    return targets


def ingest_token(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token ``POST /v1/cloudevents`` requires (None: none asked for); a
    ``http.ingest_token_env`` naming an unset or empty variable is a config error."""
    var = config.http.ingest_token_env
    if var is None or not config.http.ingest:
        return None
    env = os.environ if environ is None else environ
    value = env.get(var, "")
    if not value.strip():
        raise ConfigError([f"http.ingest_token_env: environment variable {var} is not set"])
    return value.strip()


def input_names(config: Config) -> dict[str, str]:
    """The name a record gives its model -> that model: the InferenceService name
    (``inference_service``, default the model's) with ``format: cloudevents``, else the
    ``model`` field, which is the model's name."""
    if config.kafka.format == "cloudevents":
        return {m.inference_service or m.name: m.name for m in config.models}
    return {m.name: m.name for m in config.models}


def build_pipeline(
    config: Config,
    outbox: Outbox | None = None,
    dead_letters: DeadLetters | None = None,
    on_notify: Callable[[], None] | None = None,
) -> Pipeline:
    labels = config.kafka.label_topic is not None
    monitors = {m.name: build_monitor(m, labels, config.kafka) for m in config.models}
    alerts = {
        m.name: ModelAlerts(
            AlertPolicy(m.alerts.consecutive, m.alerts.cooldown_seconds), list(m.webhooks)
        )
        for m in config.models
    }
    schemas = {
        m.name: ModelSchema(m.name, m.task, dict(m.features), tuple(m.segments))
        for m in config.models
    }
    decoder = Decoder(
        schemas,
        config.kafka.max_event_bytes,
        max_id_length=config.kafka.max_id_length,
        min_timestamp=config.kafka.min_timestamp,
        max_future_seconds=config.kafka.max_future_seconds,
    )
    telemetry = Telemetry(list(monitors), RULES)
    kafka = config.kafka
    payloads = None
    if kafka.format == "cloudevents":
        payloads = PayloadFormat(
            kafka.monitored_topic,
            input_names(config),
            {
                m.name: None if m.feature_order is None else tuple(m.feature_order)
                for m in config.models
            },
        )
    pipeline = Pipeline(
        monitors,
        alerts,
        decoder,
        telemetry,
        outbox,
        dead_letters,
        on_notify,
        kafka.label_topic,
        copies_topic=kafka.monitored_topic if kafka.repartitions else None,
        payloads=payloads,
    )
    pipeline.export_from_zero(list(monitors))
    return pipeline
