"""The YAML configuration (CONTRACT section 2): loaded once, validated, unknown keys rejected.

Only ``app`` and ``cli`` read a :class:`Config`; the code below them receives built objects.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from driftwatch.errors import ConfigError

FeatureKind = Literal["numerical", "categorical"]
Task = Literal["classification", "regression"]
WebhookFormat = Literal["generic", "slack", "airflow", "github"]
PerformanceMetric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse"]

#: Reference columns with a meaning of their own; no feature may take their name.
RESERVED_COLUMNS = ("prediction", "label", "score")
_CLASSIFICATION_METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SECRET_WORDS = ("password", "secret", "token", "sasl_oauth", "ssl_key")


def _metric_fits(metric: str, task: str) -> bool:
    """A performance metric of the task (classification or regression)?"""
    return (metric in _CLASSIFICATION_METRICS) == (task == "classification")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(_Strict):
    bootstrap_servers: list[str] = Field(min_length=1)
    group_id: str = Field(default="driftwatch", min_length=1)
    prediction_topic: str = Field(min_length=1)
    label_topic: str | None = None
    dead_letter_topic: str | None = None
    client: dict[str, Any] = Field(default_factory=dict)
    #: Records larger than this are invalid (reason ``too_large``).
    max_event_bytes: int = Field(default=1_048_576, gt=0)
    #: Longest event ``id``, in characters; longer ids are invalid (reason ``invalid_id``).
    max_id_length: int = Field(default=256, gt=0)
    #: Timestamps further ahead of the wall clock than this are invalid (reason
    #: ``timestamp_out_of_range``): room for producers' clock skew, no more, so that one
    #: far-future event cannot move an event-time window's clock.
    max_future_seconds: float = Field(default=300.0, ge=0, allow_inf_nan=False)
    #: Timestamps (epoch seconds) before this are invalid; default 2000-01-01T00:00:00Z.
    min_timestamp: float = Field(default=946_684_800.0, allow_inf_nan=False)
    #: Records the consumer returns per poll; default: the library's best (500 for
    #: kafka-python, 5,000 for confluent; see ``sources/clients.py``).
    max_poll_records: int | None = Field(default=None, gt=0)
    #: The consumer's library: kafka-python, or librdkafka's (``confluent``, extra
    #: ``driftwatch[fast]``). ``client`` holds the chosen library's own option names.
    library: Literal["kafka-python", "confluent"] = "kafka-python"
    #: What records on ``prediction_topic`` hold (CONTRACT section 12): driftwatch's own
    #: events (section 3), or model servers' payload logs as CloudEvents (KServe's logger
    #: through Knative's KafkaSink).
    format: Literal["driftwatch", "cloudevents"] = "driftwatch"
    #: Whether ``prediction_topic``'s records are keyed by model name (so each model's
    #: events are on one partition). ``false`` (implied by ``format: cloudevents``): the
    #: daemon re-keys them by model into ``repartition_topic`` and monitors that.
    keyed_by_model: bool | None = None
    #: The internal topic of records re-keyed by model (default ``<prediction_topic>.by-model``),
    #: created if missing with as many partitions as ``label_topic`` (or
    #: ``repartition_partitions``, or ``prediction_topic``'s).
    repartition_topic: str | None = Field(default=None, min_length=1)
    repartition_partitions: int | None = Field(default=None, gt=0)
    #: ``format: cloudevents``: how long a request (or response) waits for its other half,
    #: and at most how many wait per model (the oldest is dropped first, counted).
    pair_ttl_seconds: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    pair_max_pending: int = Field(default=20_000, ge=1)

    @property
    def repartitions(self) -> bool:
        """Whether the daemon re-keys ``prediction_topic`` by model first."""
        if self.keyed_by_model is None:
            return self.format == "cloudevents"
        return not self.keyed_by_model

    @property
    def monitored_topic(self) -> str:
        """The topic whose partitions hold whole models: the re-keyed one, or the input."""
        if not self.repartitions:
            return self.prediction_topic
        return self.repartition_topic or f"{self.prediction_topic}.by-model"


class HttpConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)
    #: ``POST /v1/cloudevents`` (CONTRACT section 12): events produced to
    #: ``kafka.prediction_topic``, answered 202 once the broker acknowledged them.
    ingest: bool = False
    #: The environment variable holding the bearer token ``POST /v1/cloudevents`` requires
    #: (unset: no token is asked for).
    ingest_token_env: str | None = Field(default=None, min_length=1)
    #: Largest request body ``POST /v1/cloudevents`` accepts (413 beyond).
    ingest_max_bytes: int = Field(default=1_000_000, gt=0)


class StateConfig(_Strict):
    path: Path = Path("./driftwatch-state")
    checkpoint_interval_seconds: float = Field(default=10.0, gt=0)
    #: Where partition checkpoints live: files under ``path`` (one replica), or a
    #: compacted Kafka topic every replica of the group can read (scale-out).
    backend: Literal["file", "kafka"] = "file"
    #: The state topic, with ``backend: kafka`` (created compacted, one partition, if missing).
    topic: str = Field(default="driftwatch-state", min_length=1)


class EvaluationConfig(_Strict):
    interval_seconds: float = Field(default=15.0, gt=0, allow_inf_nan=False)
    #: A tick that starts later than this is skipped (the next one coalesces it).
    misfire_grace_seconds: float = Field(default=30.0, gt=0, allow_inf_nan=False)


class WebhookConfig(_Strict):
    url: str
    format: WebhookFormat = "generic"
    secret_env: str | None = None
    timeout_seconds: float = Field(default=5.0, gt=0)
    #: Give up on a notification after this many attempts ...
    max_attempts: int = Field(default=12, ge=1)
    #: ... or once it is this old; it then stays in the outbox as failed.
    max_age_seconds: float = Field(default=86_400.0, gt=0)
    #: Retry n waits a random time in [0, min(backoff_max, backoff_initial * 2**n)].
    backoff_initial_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    #: Env var holding a bearer token (airflow, github, or any endpoint).
    token_env: str | None = None
    #: Env vars holding HTTP basic-auth credentials (airflow).
    username_env: str | None = None
    password_env: str | None = None
    #: airflow: the DAG to trigger; ``url`` is then the Airflow base URL.
    dag_id: str | None = None
    #: github: ``owner/repo`` for repository_dispatch; ``url`` is then the API base URL.
    repository: str | None = None

    @model_validator(mode="after")
    def _format_keys(self) -> WebhookConfig:
        if self.repository is not None and not re.match(r"^[\w.-]+/[\w.-]+$", self.repository):
            raise ValueError(f"repository: expected owner/repo, got {json.dumps(self.repository)}")
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("username_env and password_env go together")
        if self.token_env and self.username_env:
            raise ValueError("token_env and username_env/password_env exclude each other")
        return self

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"expected an http:// or https:// URL, got {json.dumps(v)}")
        return v


class WindowConfig(_Strict):
    events: int | None = Field(default=None, gt=0)
    seconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> WindowConfig:
        if (self.events is None) == (self.seconds is None):
            raise ValueError("expected exactly one of {events: N} or {seconds: S}")
        return self


class RecentConfig(_Strict):
    """``drift.recent``: the newest events judged on their own (CONTRACT section 8)."""

    enabled: bool = True
    #: The smallest number of newest events tested; sizes grow by sqrt(2) from here.
    min_events: int = Field(default=100, ge=10)
    #: False-alarm probability of each test at each evaluation.
    alpha: float = Field(default=1e-8, gt=1e-300, lt=0.5)
    #: Effect floor: the newest events' divergence from the reference (PSI scale);
    #: null: half the feature's PSI threshold (threshold / 2, categorical_threshold / 2).
    min_psi: float | None = Field(default=None, ge=0)


class DriftConfig(_Strict):
    method: Literal["psi", "ks"] = "psi"
    #: psi >= threshold, or KS p-value < threshold, breaches.
    threshold: float = Field(default=0.2, gt=0)
    min_events: int = Field(default=500, ge=1)
    #: PSI threshold for categorical features when ``method: ks`` (KS needs numbers).
    categorical_threshold: float = Field(default=0.2, gt=0)
    #: PSI threshold of the prediction distribution; defaults to ``threshold`` with psi, else 0.2.
    prediction_threshold: float | None = Field(default=None, gt=0)
    #: Rule ``dataset_drift`` fires when this share of the features drifts.
    share: float = Field(default=0.5, gt=0, le=1)
    #: With ``method: ks``: multiple-testing correction of the p-values across features.
    correction: Literal["none", "bonferroni", "fdr"] = "fdr"
    #: With ``method: ks``: a feature drifts only if its KS statistic is at least this.
    ks_min_statistic: float = Field(default=0.1, ge=0, lt=1)
    recent: RecentConfig = Field(default_factory=RecentConfig)

    @model_validator(mode="after")
    def _pvalue_range(self) -> DriftConfig:
        if self.method == "ks" and self.threshold >= 1:
            raise ValueError(
                f"threshold: with method ks it is a p-value in (0, 1), got {self.threshold}"
            )
        return self

    @property
    def effective_prediction_threshold(self) -> float:
        if self.prediction_threshold is not None:
            return self.prediction_threshold
        return self.threshold if self.method == "psi" else 0.2


class PerformanceConfig(_Strict):
    metric: PerformanceMetric = "accuracy"
    max_drop: float = Field(default=0.05, ge=0)
    min_labels: int = Field(default=200, ge=1)
    #: A label that waited this long for its prediction is dropped as late.
    label_ttl_seconds: float = Field(default=86_400.0, gt=0)
    #: Labels waiting for their prediction, per model; the oldest is dropped beyond it.
    max_pending: int = Field(default=1_000_000, ge=1)
    #: CONTRACT section 10: also estimate the metrics from the scores alone (binary
    #: classification; the reference needs ``score`` and ``label``) and judge them by rule
    #: ``estimated_performance`` with the same ``metric`` / ``max_drop``, ``min_labels``
    #: read as the minimum scored events. Needs no ``kafka.label_topic``.
    estimate: bool = False


class QualityConfig(_Strict):
    """``quality``: rule ``data_quality`` (CONTRACT section 9). Each ``max_*`` is optional;
    a feature's ratio above it breaches. The ratios are exported whether or not it is set."""

    #: share of the window's events where the feature is absent or null
    max_missing_ratio: float | None = Field(default=None, ge=0, le=1)
    #: numerical: share of the feature's values outside the reference's [min, max]
    max_out_of_range_ratio: float | None = Field(default=None, ge=0, le=1)
    #: categorical: share of the feature's values in categories the reference never had
    max_new_category_ratio: float | None = Field(default=None, ge=0, le=1)
    #: no decision on fewer window events (missing), or fewer of the feature's values
    min_events: int = Field(default=200, ge=1)

    @model_validator(mode="after")
    def _some_threshold(self) -> QualityConfig:
        if (
            self.max_missing_ratio is None
            and self.max_out_of_range_ratio is None
            and self.max_new_category_ratio is None
        ):
            raise ValueError(
                "expected at least one of max_missing_ratio, max_out_of_range_ratio, "
                "max_new_category_ratio"
            )
        return self


class RegressionConfig(_Strict):
    """``versions.regression``: rule ``version_regression`` (needs ``kafka.label_topic``)."""

    metric: PerformanceMetric = "accuracy"
    #: fire when the newest version is worse than the previous one by more than this
    max_drop: float = Field(default=0.02, ge=0)
    #: labelled predictions each of the two versions needs in the window
    min_labels: int = Field(default=200, ge=1)


class VersionsConfig(_Strict):
    """``versions``: per ``model_version`` figures (always on) and the optional rule."""

    #: versions tracked apart; versions beyond them are pooled as ``__other__``
    max_versions: int = Field(default=5, ge=1, le=100)
    regression: RegressionConfig | None = None


class AlertsConfig(_Strict):
    consecutive: int = Field(default=1, ge=1)
    cooldown_seconds: float = Field(default=3600.0, ge=0)
    #: Hysteresis: a firing rule resolves only once its statistic is below threshold x ratio
    #: (PSI; for KS p-values above threshold / ratio; for performance a drop below
    #: max_drop x ratio; for data quality a ratio at most max x ratio). 1 disables it.
    resolve_ratio: float = Field(default=0.5, gt=0, le=1)


class ModelConfig(_Strict):
    name: str
    task: Task = "classification"
    reference: Path
    window: WindowConfig
    features: dict[str, FeatureKind] = Field(min_length=1)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    performance: PerformanceConfig | None = None
    quality: QualityConfig | None = None
    versions: VersionsConfig = Field(default_factory=VersionsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    webhooks: list[str] = Field(default_factory=list)
    #: Cohorts: columns (read from each event's ``features``) whose values split the model.
    segments: list[str] = Field(default_factory=list)
    #: Values per segment column kept apart (most frequent in the reference); the rest
    #: are pooled as ``__other__``.
    max_segment_values: int = Field(default=20, ge=1, le=1000)
    #: ``kafka.format: cloudevents``: the InferenceService (``ce_inferenceservicename``)
    #: whose payload logs are this model's events (default: the model's name).
    inference_service: str | None = Field(default=None, min_length=1, max_length=253)
    #: ``kafka.format: cloudevents``: names of positional inputs (``"instances": [[...]]``,
    #: a v2 tensor of shape [N, F]), in order; the features must all be in ``features``.
    feature_order: list[str] | None = Field(default=None, min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"expected letters, digits, '.', '_' or '-' (at most 128), got {json.dumps(v)}"
            )
        return v

    @model_validator(mode="after")
    def _segments_are_categories(self) -> ModelConfig:
        for i, col in enumerate(self.segments):
            if self.features.get(col) == "numerical":
                raise ValueError(
                    f"segments[{i}]: {col!r} is a numerical feature; segments are categories"
                )
        if len(set(self.segments)) != len(self.segments):
            raise ValueError("segments: a column is listed twice")
        return self

    @model_validator(mode="after")
    def _feature_order(self) -> ModelConfig:
        if self.feature_order is not None:
            for i, f in enumerate(self.feature_order):
                if f not in self.features:
                    raise ValueError(f"feature_order[{i}]: {f!r} is not one of the features")
            if len(set(self.feature_order)) != len(self.feature_order):
                raise ValueError("feature_order: a feature is listed twice")
        return self

    @model_validator(mode="after")
    def _metric_fits_task(self) -> ModelConfig:
        if self.performance is not None and not _metric_fits(self.performance.metric, self.task):
            raise ValueError(
                f"performance.metric: {self.performance.metric} does not fit task {self.task}"
            )
        p = self.performance
        if p is not None and p.estimate and self.task != "classification":
            raise ValueError(
                "performance.estimate: needs task classification (binary, with scores)"
            )
        return self


def _kafka_problems(k: KafkaConfig) -> list[str]:
    problems = []
    if k.format == "cloudevents" and k.keyed_by_model:
        problems.append(
            "kafka.keyed_by_model: format cloudevents is read unkeyed (KafkaSink does not key "
            "records by model): leave it out or set false"
        )
    if k.repartition_topic is not None and not k.repartitions:
        problems.append(
            "kafka.repartition_topic: set only when records are not keyed by model "
            "(keyed_by_model: false, or format: cloudevents)"
        )
    if k.repartition_topic is not None and k.repartition_topic in (
        k.prediction_topic,
        k.label_topic,
        k.dead_letter_topic,
    ):
        problems.append(
            "kafka.repartition_topic: must differ from prediction_topic, label_topic and "
            "dead_letter_topic"
        )
    return problems


class Config(_Strict):
    kafka: KafkaConfig
    http: HttpConfig = Field(default_factory=HttpConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    webhooks: dict[str, WebhookConfig] = Field(default_factory=dict)
    models: list[ModelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        seen: set[str] = set()
        services: dict[str, int] = {}
        problems: list[str] = []
        problems += _kafka_problems(self.kafka)
        if self.http.ingest and self.kafka.format != "cloudevents":
            problems.append("http.ingest: needs kafka.format cloudevents")
        if self.http.ingest and self.http.ingest_max_bytes > self.kafka.max_event_bytes:
            problems.append(
                f"http.ingest_max_bytes: {self.http.ingest_max_bytes} is more than "
                f"kafka.max_event_bytes ({self.kafka.max_event_bytes}): such an event would "
                "be accepted, then refused as too_large"
            )
        for i, m in enumerate(self.models):
            if (
                m.performance is not None
                and not m.performance.estimate
                and self.kafka.label_topic is None
            ):
                problems.append(
                    f"models[{i}].performance: needs kafka.label_topic (where labels arrive), "
                    "or estimate: true"
                )
            regression = m.versions.regression
            if regression is not None:
                if self.kafka.label_topic is None:
                    problems.append(
                        f"models[{i}].versions.regression: needs kafka.label_topic "
                        "(where labels arrive)"
                    )
                if not _metric_fits(regression.metric, m.task):
                    problems.append(
                        f"models[{i}].versions.regression.metric: {regression.metric} does not "
                        f"fit task {m.task}"
                    )
            if m.name in seen:
                problems.append(f"models[{i}].name: duplicate model name {json.dumps(m.name)}")
            seen_twice = seen & {m.name}
            for name in m.features:
                if name in RESERVED_COLUMNS:
                    problems.append(
                        f"models[{i}].features.{name}: the name is reserved (a reference "
                        f"column named {name!r} holds the model's {name}, not a feature); "
                        "rename the feature in the events and the reference"
                    )
            seen.add(m.name)
            service = m.inference_service or m.name
            if self.kafka.format != "cloudevents" or m.name in seen_twice:
                pass
            elif service in services:
                problems.append(
                    f"models[{i}].inference_service: {service!r} is already models"
                    f"[{services[service]}]'s"
                )
            services.setdefault(service, i)
            for j, hook in enumerate(m.webhooks):
                if hook not in self.webhooks:
                    known = ", ".join(sorted(self.webhooks)) or "none defined"
                    problems.append(
                        f"models[{i}].webhooks[{j}]: unknown webhook {json.dumps(hook)} "
                        f"(webhooks: {known})"
                    )
        if problems:
            raise ConfigError(problems)
        return self


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _is_secret(path: str) -> bool:
    low = path.lower()
    return any(word in low for word in _SECRET_WORDS)


def _show(value: object, path: str) -> str:
    if _is_secret(path):
        return "***"
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _format_error(err: Any) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = _path(loc)
    kind = err["type"]
    got = _show(err.get("input"), path)
    if kind == "literal_error":
        expected = err["ctx"]["expected"].replace("'", '"')
        return f"{path}: expected {expected}, got {got}"
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "value_error":
        inner = err.get("ctx", {}).get("error")
        if isinstance(inner, ConfigError):
            return "\n".join(inner.problems)
        msg = str(inner) if inner is not None else err["msg"]
        return f"{path}: {msg}"
    return f"{path}: {err['msg'][0].lower()}{err['msg'][1:]}, got {got}"


def parse_config(data: object, base_dir: Path) -> Config:
    """Validate a decoded YAML document; relative paths are resolved against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping, got {type(data).__name__}"])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems: list[str] = []
        for e in exc.errors():
            for line in _format_error(e).splitlines():
                if line not in problems:
                    problems.append(line)
        raise ConfigError(problems) from None
    except ConfigError:
        raise

    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else (base_dir / p).resolve()

    models = [m.model_copy(update={"reference": resolve(m.reference)}) for m in cfg.models]
    state = cfg.state.model_copy(update={"path": resolve(cfg.state.path)})
    return cfg.model_copy(update={"models": models, "state": state})


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file. Raises :class:`ConfigError` naming each bad key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read the config file ({exc.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"{p}: {problem}{where}"]) from None
    return parse_config(data, p.absolute().parent)
