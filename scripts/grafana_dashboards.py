"""Generates grafana/dashboards/*.json (run: python scripts/grafana_dashboards.py).

The dashboards are code so that every panel's PromQL is reviewed in one place; a test
checks the committed JSON equals this output, that every expression parses (promtool)
and that it names only metrics a running daemon exports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DS = {"type": "prometheus", "uid": "driftwatch-prometheus"}
OUT = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def panel(
    pid: int,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    pos: tuple[int, int, int, int],
    kind: str = "timeseries",
    unit: str = "short",
    threshold: float | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    x, y, w, h = pos
    defaults: dict[str, Any] = {"unit": unit, "custom": {}}
    if threshold is not None:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": threshold}],
        }
        defaults["custom"]["thresholdsStyle"] = {"mode": "line+area"}
    p = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi"},
        },
    }
    if extra:
        p.update(extra)
    return p


def variable(name: str, query: str, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {},
        "sort": 1,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["driftwatch", "ml"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [
            {
                "title": "Model drill-down",
                "type": "dashboards",
                "tags": ["driftwatch"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": panels,
    }


M = 'model=~"$model"'
MF = 'model=~"$model", feature=~"$feature"'


def overview() -> dict[str, Any]:
    panels = [
        panel(
            1,
            "Drifted features ratio per model",
            "Share of each model's features whose drift rule breaches (driftwatch_model_drifted_features_ratio). 0.5 and up fires dataset_drift by default.",
            [target(f"driftwatch_model_drifted_features_ratio{{{M}}}", "{{model}}")],
            (0, 0, 12, 8),
            unit="percentunit",
            threshold=0.5,
        ),
        panel(
            2,
            "Firing rules",
            "Rules currently firing per model (driftwatch_alert_active == 1).",
            [target(f"driftwatch_alert_active{{{M}}} == 1", "{{model}} {{rule}}")],
            (12, 0, 12, 8),
            kind="state-timeline",
        ),
        panel(
            3,
            "PSI per feature",
            "Population Stability Index of the current window against the reference; the red line is the default threshold 0.2.",
            [target(f"driftwatch_feature_psi{{{MF}}}", "{{model}} / {{feature}}")],
            (0, 8, 12, 9),
            threshold=0.2,
        ),
        panel(
            4,
            "PSI heatmap: feature x time",
            "Each row a feature, each cell its PSI at that time: where and when drift started.",
            [
                target(
                    f"max by (model, feature) (driftwatch_feature_psi{{{MF}}})",
                    "{{model}} / {{feature}}",
                )
            ],
            (12, 8, 12, 9),
            kind="heatmap",
            extra={
                "options": {
                    "calculate": False,
                    "yAxis": {"axisPlacement": "left"},
                    "color": {"scheme": "Oranges", "mode": "scheme"},
                    "cellGap": 1,
                    "legend": {"show": True},
                }
            },
        ),
        panel(
            5,
            "KS p-values (numerical features)",
            "Two-sample Kolmogorov-Smirnov p-value per numerical feature (log scale); small means drift. Uncorrected; drift.correction applies to decisions.",
            [target(f"driftwatch_feature_ks_pvalue{{{MF}}}", "{{model}} / {{feature}}")],
            (0, 17, 12, 8),
            extra={
                "fieldConfig": {
                    "defaults": {
                        "unit": "short",
                        "custom": {"scaleDistribution": {"type": "log", "log": 10}},
                    },
                    "overrides": [],
                }
            },
        ),
        panel(
            6,
            "Performance vs reference",
            "The window's performance over its labelled predictions (solid) against the same metric on the reference data (dashed).",
            [
                target(f"driftwatch_model_performance{{{M}}}", "{{model}} {{metric}}"),
                target(
                    f"driftwatch_model_performance_reference{{{M}}}",
                    "{{model}} {{metric}} (reference)",
                    "B",
                ),
            ],
            (12, 17, 12, 8),
            extra={
                "fieldConfig": {
                    "defaults": {"unit": "short", "custom": {}},
                    "overrides": [
                        {
                            "matcher": {"id": "byFrameRefID", "options": "B"},
                            "properties": [
                                {
                                    "id": "custom.lineStyle",
                                    "value": {"fill": "dash", "dash": [10, 10]},
                                }
                            ],
                        }
                    ],
                }
            },
        ),
        panel(
            7,
            "Label coverage",
            "Share of the window's predictions that have a joined label.",
            [target(f"driftwatch_model_label_coverage_ratio{{{M}}}", "{{model}}")],
            (0, 25, 8, 8),
            unit="percentunit",
        ),
        panel(
            8,
            "Label delay (p50, p95)",
            "Label time minus prediction time, at the join.",
            [
                target(
                    f"histogram_quantile(0.5, sum by (le, model) (rate(driftwatch_label_delay_seconds_bucket{{{M}}}[$__rate_interval])))",
                    "{{model}} p50",
                ),
                target(
                    f"histogram_quantile(0.95, sum by (le, model) (rate(driftwatch_label_delay_seconds_bucket{{{M}}}[$__rate_interval])))",
                    "{{model}} p95",
                    "B",
                ),
            ],
            (8, 25, 8, 8),
            unit="s",
        ),
        panel(
            9,
            "Labels pending and late",
            "Labels waiting for their prediction, and the rate of labels dropped as late.",
            [
                target(f"driftwatch_labels_pending{{{M}}}", "{{model}} pending"),
                target(
                    f"rate(driftwatch_labels_late_total{{{M}}}[$__rate_interval])",
                    "{{model}} late/s",
                    "B",
                ),
            ],
            (16, 25, 8, 8),
        ),
        panel(
            10,
            "Window sizes",
            "Prediction events in each model's window, and how many have a label.",
            [
                target(f"driftwatch_window_events{{{M}}}", "{{model}} events"),
                target(f"driftwatch_window_labeled_events{{{M}}}", "{{model}} labelled", "B"),
            ],
            (0, 33, 8, 8),
        ),
        panel(
            11,
            "Events consumed",
            "Valid prediction events per second, per model.",
            [
                target(
                    f"sum by (model) (rate(driftwatch_events_total{{{M}}}[$__rate_interval]))",
                    "{{model}}",
                )
            ],
            (8, 33, 8, 8),
            unit="reqps",
        ),
        panel(
            12,
            "Invalid events by reason",
            "Records skipped (and dead-lettered) per second, by reason.",
            [
                target(
                    "sum by (reason) (rate(driftwatch_invalid_events_total[$__rate_interval])) > 0",
                    "{{reason}}",
                )
            ],
            (16, 33, 8, 8),
            unit="reqps",
        ),
        panel(
            13,
            "Webhook outcomes",
            "Delivery attempts per webhook and outcome over 15 minutes, and notifications waiting.",
            [
                target(
                    "sum by (webhook, outcome) (increase(driftwatch_webhook_deliveries_total[15m]))",
                    "{{webhook}} {{outcome}}",
                ),
                target("driftwatch_webhook_pending", "{{webhook}} pending", "B"),
            ],
            (0, 41, 12, 8),
        ),
        panel(
            14,
            "Evaluation duration (p50, p95)",
            "Time of one evaluation round of every model.",
            [
                target(
                    "histogram_quantile(0.5, sum by (le) (rate(driftwatch_evaluation_duration_seconds_bucket[$__rate_interval])))",
                    "p50",
                ),
                target(
                    "histogram_quantile(0.95, sum by (le) (rate(driftwatch_evaluation_duration_seconds_bucket[$__rate_interval])))",
                    "p95",
                    "B",
                ),
            ],
            (12, 41, 12, 8),
            unit="s",
        ),
    ]
    variables = [
        variable("model", "label_values(driftwatch_window_events, model)"),
        variable("feature", 'label_values(driftwatch_feature_psi{model=~"$model"}, feature)'),
    ]
    return dashboard(
        "driftwatch-overview",
        "driftwatch / Overview",
        "Drift, performance and health of every monitored model.",
        panels,
        variables,
    )


def model_drilldown() -> dict[str, Any]:
    S = 'model="$model"'
    panels = [
        panel(
            1,
            "Feature drift flags",
            "1 while the feature's drift rule breaches.",
            [target(f"driftwatch_feature_drift{{{S}}}", "{{feature}}")],
            (0, 0, 24, 7),
            kind="state-timeline",
        ),
        panel(
            2,
            "PSI per feature",
            "PSI of the window against the reference.",
            [target(f"driftwatch_feature_psi{{{S}}}", "{{feature}}")],
            (0, 7, 12, 8),
            threshold=0.2,
        ),
        panel(
            3,
            "KS statistic per feature",
            "Largest gap between the window's and the reference's CDFs.",
            [target(f"driftwatch_feature_ks_statistic{{{S}}}", "{{feature}}")],
            (12, 7, 12, 8),
        ),
        panel(
            4,
            "Prediction PSI",
            "PSI of the distribution of predictions (classes or scores).",
            [target(f"driftwatch_prediction_psi{{{S}}}", "prediction")],
            (0, 15, 12, 8),
            threshold=0.2,
        ),
        panel(
            5,
            "Performance, every metric",
            "Current (solid) and reference (dashed) values.",
            [
                target(f"driftwatch_model_performance{{{S}}}", "{{metric}}"),
                target(
                    f"driftwatch_model_performance_reference{{{S}}}", "{{metric}} (reference)", "B"
                ),
            ],
            (12, 15, 12, 8),
        ),
        panel(
            6,
            "Segment PSI",
            "PSI of each segment value's window against that value's reference rows.",
            [
                target(
                    f"driftwatch_segment_feature_psi{{{S}}}", "{{segment}}={{value}} / {{feature}}"
                )
            ],
            (0, 23, 12, 8),
            threshold=0.2,
        ),
        panel(
            7,
            "Segment performance",
            "Performance of each segment value's labelled predictions.",
            [target(f"driftwatch_segment_performance{{{S}}}", "{{segment}}={{value}} {{metric}}")],
            (12, 23, 12, 8),
        ),
        panel(
            8,
            "Segment window sizes",
            "Events of each segment value in the window.",
            [target(f"driftwatch_segment_window_events{{{S}}}", "{{segment}}={{value}}")],
            (0, 31, 12, 8),
        ),
        panel(
            9,
            "Missing feature values",
            "Events lacking a feature's value, per second.",
            [
                target(
                    f"rate(driftwatch_missing_feature_values_total{{{S}}}[$__rate_interval])",
                    "{{feature}}",
                )
            ],
            (12, 31, 12, 8),
            unit="reqps",
        ),
        panel(
            10,
            "Last evaluation",
            "When the model was last evaluated.",
            [
                target(
                    f"time() - driftwatch_last_evaluation_timestamp_seconds{{{S}}}", "seconds ago"
                )
            ],
            (0, 39, 12, 6),
            kind="stat",
            unit="s",
        ),
        panel(
            11,
            "Labels",
            "Labels consumed, dropped as duplicate or over the cap.",
            [
                target(f"rate(driftwatch_labels_total{{{S}}}[$__rate_interval])", "labels/s"),
                target(
                    f"rate(driftwatch_labels_dropped_total{{{S}}}[$__rate_interval])",
                    "dropped {{reason}}/s",
                    "B",
                ),
            ],
            (12, 39, 12, 6),
        ),
        *quality_panels(S, 45),
        *version_panels(S, 62),
    ]
    return dashboard(
        "driftwatch-model",
        "driftwatch / Model drill-down",
        "One model: every feature, the predictions, performance, segments and data quality.",
        panels,
        [
            variable("model", "label_values(driftwatch_window_events, model)", multi=False),
            variable(
                "feature", 'label_values(driftwatch_feature_missing_ratio{model="$model"}, feature)'
            ),
        ],
    )


def dashed(ref: str) -> dict[str, Any]:
    """Field config drawing the targets of ``ref`` (the reference's figures) dashed."""
    return {
        "fieldConfig": {
            "defaults": {"unit": "short", "custom": {}},
            "overrides": [
                {
                    "matcher": {"id": "byFrameRefID", "options": ref},
                    "properties": [
                        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
                    ],
                }
            ],
        }
    }


def quality_panels(selector: str, y: int) -> list[dict[str, Any]]:
    """Data quality per feature (CONTRACT section 9), for the model drill-down."""
    sf = f'{selector}, feature=~"$feature"'
    return [
        panel(
            12,
            "Missing ratio per feature",
            "Share of the window's events where the feature is absent or null (driftwatch_feature_missing_ratio). Rule data_quality breaches above quality.max_missing_ratio.",
            [target(f"driftwatch_feature_missing_ratio{{{sf}}}", "{{feature}}")],
            (0, y, 8, 8),
            unit="percentunit",
        ),
        panel(
            13,
            "Out-of-range ratio (numerical)",
            "Share of a numerical feature's window values below the reference minimum or above its maximum (driftwatch_feature_out_of_range_ratio).",
            [target(f"driftwatch_feature_out_of_range_ratio{{{sf}}}", "{{feature}}")],
            (8, y, 8, 8),
            unit="percentunit",
        ),
        panel(
            14,
            "New-category ratio (categorical)",
            "Share of a categorical feature's window values in categories the reference never had (driftwatch_feature_new_category_ratio).",
            [target(f"driftwatch_feature_new_category_ratio{{{sf}}}", "{{feature}}")],
            (16, y, 8, 8),
            unit="percentunit",
        ),
        panel(
            15,
            "Mean vs reference (numerical)",
            "The window's mean from its fine bins (solid; error bound in /status) against the reference's mean (dashed). Pick features of one scale with the feature variable.",
            [
                target(f"driftwatch_feature_mean{{{sf}}}", "{{feature}}"),
                target(
                    f"driftwatch_feature_reference_mean{{{sf}}}", "{{feature}} (reference)", "B"
                ),
            ],
            (0, y + 8, 12, 9),
            extra=dashed("B"),
        ),
        panel(
            16,
            "Quantiles 0.05 / 0.5 / 0.95 vs reference (numerical)",
            "The window's quantiles from its fine bins (solid; off by at most one fine bin's width, about 1/500 of the reference, per quantile in /status) against the reference's exact quantiles (dashed).",
            [
                target(f"driftwatch_feature_quantile{{{sf}}}", "{{feature}} q{{quantile}}"),
                target(
                    f"driftwatch_feature_reference_quantile{{{sf}}}",
                    "{{feature}} q{{quantile}} (reference)",
                    "B",
                ),
            ],
            (12, y + 8, 12, 9),
            extra=dashed("B"),
        ),
    ]


def version_panels(selector: str, y: int) -> list[dict[str, Any]]:
    """Model versions (CONTRACT section 9): traffic, labelled performance, prediction PSI."""
    return [
        panel(
            17,
            "Window events per model version",
            "Events of each model_version in the window (driftwatch_version_window_events): a canary's share of the traffic. __other__ pools versions beyond versions.max_versions.",
            [target(f"driftwatch_version_window_events{{{selector}}}", "{{version}}")],
            (0, y, 8, 8),
        ),
        panel(
            18,
            "Labelled performance per model version",
            "Each version's metric on its labelled predictions in the window (driftwatch_version_performance). Rule version_regression compares the newest version with the previous one.",
            [target(f"driftwatch_version_performance{{{selector}}}", "{{version}} {{metric}}")],
            (8, y, 8, 8),
        ),
        panel(
            19,
            "Prediction PSI per model version",
            "PSI of each version's predictions against the reference (driftwatch_version_prediction_psi): a new version answering differently shows here before labels arrive.",
            [target(f"driftwatch_version_prediction_psi{{{selector}}}", "{{version}}")],
            (16, y, 8, 8),
        ),
    ]


def render() -> dict[str, str]:
    return {
        name: json.dumps(d, indent=2, sort_keys=True) + "\n"
        for name, d in (
            ("driftwatch-overview.json", overview()),
            ("driftwatch-model.json", model_drilldown()),
        )
    }


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
