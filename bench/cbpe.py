"""Performance estimated without labels: realized vs driftwatch vs NannyML's CBPE.

Generated data (``bench/cbpe_data.py``): a calibrated binary classifier, a 20,000-row
reference, then windows of 5,000 scored predictions under covariate shift only. Per
window: the realized metrics (from the labels the daemon never sees), driftwatch's
estimate as the daemon reports it (a pipeline with ``performance.estimate: true`` and no
label topic, fed the window's events, then evaluated), and NannyML's CBPE fitted on the
same reference and run on the same windows (``chunk_size`` = the window). NannyML is a
bench-only dependency, imported lazily; without it its column is left out.

    python -m bench cbpe            # the summary rows
    python -m bench.cbpe [--quick]  # the per-window table (markdown, as in the README)
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from bench.cbpe_data import SHIFTS, Sample, allowed_error, realized, sample
from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.sources.base import Record

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REFERENCE_ROWS = 20_000
WINDOW = 5_000
TARGET = 0.03


def _frame(s: Sample) -> pd.DataFrame:
    return pd.DataFrame(
        {"x1": s.x1, "x2": s.x2, "score": s.score, "prediction": s.prediction, "label": s.label}
    )


def _driftwatch(tmp: Path, ref: Sample, windows: list[Sample]) -> list[dict[str, float]]:
    _frame(ref).to_csv(tmp / "ref.csv", index=False)
    cfg = {
        "kafka": {"bootstrap_servers": ["127.0.0.1:1"], "prediction_topic": "p"},
        "models": [
            {
                "name": "m",
                "reference": "ref.csv",
                "window": {"events": WINDOW},
                "features": {"x1": "numerical", "x2": "numerical"},
                "performance": {"metric": "accuracy", "estimate": True, "min_labels": 500},
            }
        ],
    }
    out = []
    for k, w in enumerate(windows):
        pipe = build_pipeline(parse_config(cfg, tmp))  # each window on its own
        recs = [
            Record(
                "p",
                0,
                i,
                b"m",
                orjson.dumps(
                    {
                        "model": "m",
                        "id": f"w{k}-{i}",
                        "timestamp": 1_790_000_000.0 + i,
                        "features": {"x1": float(w.x1[i]), "x2": float(w.x2[i])},
                        "prediction": int(w.prediction[i]),
                        "score": float(w.score[i]),
                    }
                ),
                0.0,
            )
            for i in range(w.score.size)
        ]
        pipe.apply(recs)
        [(ev, _)] = pipe.evaluate(1_790_000_000.0 + WINDOW)
        assert ev.scored_events == w.score.size, "a window must hold exactly its events"
        out.append(dict(ev.performance_estimated))
    return out


def _nannyml(ref: Sample, windows: list[Sample]) -> list[dict[str, float]] | None:
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no phoning home
    try:
        import nannyml as nml  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    analysis = pd.concat([_frame(w) for w in windows], ignore_index=True).drop(columns=["label"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = nml.CBPE(
            y_pred_proba="score",
            y_pred="prediction",
            y_true="label",
            metrics=list(METRICS),
            chunk_size=WINDOW,
            problem_type="classification_binary",
        )
        est.fit(_frame(ref))
        df = est.estimate(analysis).filter(period="analysis").to_df()
    return [{m: float(df[(m, "value")].iloc[k]) for m in METRICS} for k in range(len(windows))]


def compare(seeds: int = 3) -> list[dict[str, Any]]:
    """One row per (seed, shift, metric): realized, driftwatch, nannyml (None: not
    installed)."""
    rows: list[dict[str, Any]] = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        ref = sample(rng, REFERENCE_ROWS)
        windows = [sample(rng, WINDOW, shift) for shift in SHIFTS]
        with tempfile.TemporaryDirectory() as tmp:
            ours = _driftwatch(Path(tmp), ref, windows)
        theirs = _nannyml(ref, windows)
        for k, (shift, w) in enumerate(zip(SHIFTS, windows, strict=True)):
            real = realized(w)
            for m in METRICS:
                rows.append(
                    {
                        "seed": seed,
                        "window": shift.name,
                        "metric": m,
                        "realized": real[m],
                        "driftwatch": ours[k][m],
                        "nannyml": None if theirs is None else theirs[k][m],
                        "allowed": max(TARGET, allowed_error(m, real[m], w)),
                    }
                )
    return rows


def _errors(rows: list[dict[str, Any]], metric: str, who: str) -> np.ndarray:
    return np.array(
        [abs(r[who] - r["realized"]) for r in rows if r["metric"] == metric and r[who] is not None]
    )


def run(quick: bool = False) -> list[tuple[str, str, str, str]]:
    rows = compare(1 if quick else 3)
    have_nannyml = rows[0]["nannyml"] is not None
    out: list[tuple[str, str, str, str]] = []
    windows = len({(r["seed"], r["window"]) for r in rows})
    for i, m in enumerate(METRICS):
        ours = _errors(rows, m, "driftwatch")
        allowed = np.array([r["allowed"] for r in rows if r["metric"] == m])
        ok = bool(np.all(ours <= allowed))
        measured = f"{m}: |estimate - realized|, {windows} windows"
        result = f"max {ours.max():.4f}, mean {ours.mean():.4f}"
        target = f"each <= {TARGET}" + (
            " (or 2 sampling errors)" if np.any(allowed > TARGET) else ""
        )
        if have_nannyml:
            theirs = _errors(rows, m, "nannyml")
            result += f" (NannyML max {theirs.max():.4f}, mean {theirs.mean():.4f})"
            ok = ok and ours.mean() <= theirs.mean() + 1e-4
            target += ", mean <= NannyML's"
        else:
            result += " (NannyML not installed)"
        out.append(
            (
                "CBPE: estimated performance" if i == 0 else "",
                measured,
                result,
                target + (" ok" if ok else " MISSED"),
            )
        )
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per window and metric (the first seed)."""
    lines = [
        "| window | metric | realized | driftwatch | NannyML CBPE |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["seed"] == 0:
            lines.append(
                f"| {r['window']} | {r['metric']} | {_fmt(r['realized'])} | "
                f"{_fmt(r['driftwatch'])} | {_fmt(r['nannyml'])} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cbpe")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    rows = compare(1 if args.quick else 3)
    print(table(rows))
    print()
    for r in run(args.quick):
        print("  ".join(r))


if __name__ == "__main__":
    main()
