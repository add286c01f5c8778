from __future__ import annotations

import math
import platform
import shutil
import subprocess

import pytest

from driftwatch import __version__
from driftwatch.monitor.quality import FeatureQuality
from driftwatch.monitor.results import RULES, Evaluation, FeatureResult
from driftwatch.monitor.telemetry import Telemetry
from driftwatch.monitor.versions import VersionResult
from driftwatch.sinks.prometheus import PrometheusExporter


def exporter(unbounded: bool = False):
    tel = Telemetry(["m"], RULES)
    ev = Evaluation(
        "m",
        1_790_000_000.0,
        1234,
        None,
        None,
        (
            FeatureResult("x", "numerical", 0.31, 0.2, 1e-9, True),
            FeatureResult("c", "categorical", 0.01, None, None, False),
        ),
        0.05,
        False,
        True,
        quality={
            "x": FeatureQuality(
                "x",
                "numerical",
                1234,
                1200,
                34 / 1234,
                out_of_range_ratio=0.01,
                mean=2.5,
                mean_error_bound=math.inf if unbounded else 0.01,
                quantiles={0.05: 1.0, 0.5: 2.5, 0.95: 4.0},
                quantile_error_bounds={
                    0.05: 0.02,
                    0.5: 0.01,
                    0.95: math.inf if unbounded else 0.03,
                },
                reference_mean=2.0,
                reference_quantiles={0.05: 0.5, 0.5: 2.0, 0.95: 3.5},
            ),
            "c": FeatureQuality("c", "categorical", 1234, 1234, 0.0, new_category_ratio=0.25),
        },
        versions=(
            VersionResult("v1", 600, 300, {"accuracy": 0.9, "f1": float("nan")}, 0.02, 1),
            VersionResult("v2", 600, 0, {"accuracy": float("nan")}, 0.4, 2),
            VersionResult("__other__", 34, 10, {"accuracy": 0.5}, None, None),
        ),
        scored_events=1200,
        performance_estimated={"accuracy": 0.81, "roc_auc": 0.88, "precision": float("nan")},
        estimated_metric="accuracy",
        estimated_reference=0.9,
        estimated_breach=True,
    )
    tel.record(ev, {"feature_drift": True, "prediction_drift": False, "data_quality": False})
    tel.count_events("m", 1234)
    tel.count_invalid("invalid_json", 3)
    tel.count_missing("m", "x", 2)
    exp = PrometheusExporter(tel.snapshot, ["retrain"])
    exp.observe_evaluation(0.01)
    tel.count_delivery("retrain", "retry")
    return exp


def test_contract_metrics_are_exported():
    reg = exporter().registry
    get = reg.get_sample_value
    assert get("driftwatch_feature_psi", {"model": "m", "feature": "x"}) == 0.31
    assert get("driftwatch_feature_drift", {"model": "m", "feature": "x"}) == 1.0
    assert get("driftwatch_feature_drift", {"model": "m", "feature": "c"}) == 0.0
    assert get("driftwatch_feature_ks_pvalue", {"model": "m", "feature": "x"}) == 1e-9
    assert get("driftwatch_feature_ks_statistic", {"model": "m", "feature": "c"}) is None
    assert get("driftwatch_prediction_psi", {"model": "m"}) == 0.05
    assert get("driftwatch_model_drifted_features_ratio", {"model": "m"}) == 0.5
    assert get("driftwatch_window_events", {"model": "m"}) == 1234
    assert get("driftwatch_events_total", {"model": "m"}) == 1234
    assert get("driftwatch_invalid_events_total", {"reason": "invalid_json"}) == 3
    assert get("driftwatch_invalid_events_total", {"reason": "too_large"}) == 0
    assert get("driftwatch_alert_active", {"model": "m", "rule": "feature_drift"}) == 1
    assert (
        get("driftwatch_webhook_deliveries_total", {"webhook": "retrain", "outcome": "retry"}) == 1
    )
    assert get("driftwatch_evaluation_duration_seconds_count") == 1
    assert get("driftwatch_last_evaluation_timestamp_seconds", {"model": "m"}) == 1_790_000_000.0


def test_version_metrics_are_exported():
    get = exporter().registry.get_sample_value
    assert get("driftwatch_version_window_events", {"model": "m", "version": "v1"}) == 600
    assert get("driftwatch_version_window_events", {"model": "m", "version": "__other__"}) == 34
    v1 = {"model": "m", "version": "v1"}
    assert get("driftwatch_version_performance", {**v1, "metric": "accuracy"}) == 0.9
    # a version without labels exports no performance
    assert (
        get("driftwatch_version_performance", {"model": "m", "version": "v2", "metric": "accuracy"})
        is None
    )
    assert get("driftwatch_version_prediction_psi", v1) == 0.02
    assert get("driftwatch_version_prediction_psi", {"model": "m", "version": "__other__"}) is None
    assert get("driftwatch_alert_active", {"model": "m", "rule": "version_regression"}) == 0.0


def test_estimated_performance_metrics_are_exported():
    """CONTRACT section 10: estimated without labels (no label topic, no labelled events)."""
    get = exporter().registry.get_sample_value
    acc = {"model": "m", "metric": "accuracy"}
    assert get("driftwatch_model_performance_estimated", acc) == 0.81
    assert get("driftwatch_model_performance_estimated", {**acc, "metric": "roc_auc"}) == 0.88
    assert get("driftwatch_window_scored_events", {"model": "m"}) == 1200
    assert get("driftwatch_model_performance", acc) is None  # nothing measured
    assert get("driftwatch_alert_active", {"model": "m", "rule": "estimated_performance"}) == 0.0


def test_data_quality_metrics_are_exported():
    get = exporter().registry.get_sample_value
    x, c = {"model": "m", "feature": "x"}, {"model": "m", "feature": "c"}
    assert get("driftwatch_feature_missing_ratio", x) == 34 / 1234
    assert get("driftwatch_feature_missing_ratio", c) == 0.0
    assert get("driftwatch_feature_out_of_range_ratio", x) == 0.01
    assert get("driftwatch_feature_out_of_range_ratio", c) is None  # numerical only
    assert get("driftwatch_feature_new_category_ratio", c) == 0.25
    assert get("driftwatch_feature_new_category_ratio", x) is None  # categorical only
    assert get("driftwatch_feature_mean", x) == 2.5
    assert get("driftwatch_feature_reference_mean", x) == 2.0
    for q, now, ref in (("0.05", 1.0, 0.5), ("0.5", 2.5, 2.0), ("0.95", 4.0, 3.5)):
        assert get("driftwatch_feature_quantile", {**x, "quantile": q}) == now
        assert get("driftwatch_feature_reference_quantile", {**x, "quantile": q}) == ref
    assert get("driftwatch_feature_mean", c) is None
    assert get("driftwatch_alert_active", {"model": "m", "rule": "data_quality"}) == 0.0


def test_unbounded_summaries_are_exported_as_nan():
    """Values out of the reference's range are read as its min / max: a mean or quantile
    built on them looks plausible and may be wrong by any amount, so /metrics says NaN."""
    get = exporter(unbounded=True).registry.get_sample_value
    x = {"model": "m", "feature": "x"}
    assert math.isnan(get("driftwatch_feature_mean", x))
    assert get("driftwatch_feature_quantile", {**x, "quantile": "0.5"}) == 2.5
    assert math.isnan(get("driftwatch_feature_quantile", {**x, "quantile": "0.95"}))
    assert get("driftwatch_feature_reference_mean", x) == 2.0


def test_build_info_is_exported_once_with_version_and_python():
    exp = exporter()
    labels = {"version": __version__, "python": platform.python_version()}
    assert exp.registry.get_sample_value("driftwatch_build_info", labels) == 1.0
    sample = f'driftwatch_build_info{{python="{labels["python"]}",version="{__version__}"}} 1.0'
    for accept in (None, "application/openmetrics-text; version=1.0.0"):
        text = exp.render(accept)[0].decode()
        lines = [ln for ln in text.splitlines() if ln.startswith("driftwatch_build_info")]
        assert lines == [sample], accept
        assert "# TYPE driftwatch_build_info gauge" in text


@pytest.mark.parametrize("accept", [None, "application/openmetrics-text; version=1.0.0"])
def test_promtool_check_metrics_passes(accept):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run does)"
    body, ctype = exporter().render(accept)
    assert ctype.startswith("application/openmetrics-text" if accept else "text/plain")
    if accept:  # promtool lints the text format; the OpenMetrics body must just end properly
        assert body.endswith(b"# EOF\n")
        return
    res = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
