"""Labels: memory of pending (unmatched) labels, and join throughput beside prediction ingest."""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from bench.memory import rss_bytes
from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.monitor.join import LabelJoin
from driftwatch.sources.base import Record


def _pending(n: int) -> tuple[float, int]:
    gc.collect()
    before = rss_bytes()
    join = LabelJoin(ttl_seconds=1e9, max_pending=n)
    for i in range(n + n // 10):  # 10% past the cap: the oldest are evicted
        join.add_label(f"pred-{i:012d}", "1", 1000.0, 1000.0)
    gc.collect()
    per_label = (rss_bytes() - before) / len(join.labels)
    return per_label, len(join.labels)


def _throughput(n: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        x = rng.normal(0, 1, 5000)
        s = 1 / (1 + np.exp(-2 * x))
        pd.DataFrame(
            {
                "x": x,
                "region": rng.choice(["a", "b"], 5000),
                "score": s,
                "prediction": (s > 0.5).astype(int),
                "label": (rng.random(5000) < s).astype(int),
            }
        ).to_csv(Path(tmp) / "r.csv", index=False)
        cfg = parse_config(
            {
                "kafka": {
                    "bootstrap_servers": ["x:1"],
                    "prediction_topic": "p",
                    "label_topic": "l",
                    "min_timestamp": 0,  # the generated times start at 1970 + 1000 s
                },
                "models": [
                    {
                        "name": "m",
                        "reference": "r.csv",
                        "window": {"events": n},
                        "features": {"x": "numerical", "region": "categorical"},
                        "performance": {"metric": "roc_auc"},
                    }
                ],
            },
            Path(tmp),
        )
        pipe = build_pipeline(cfg)
    xs = rng.normal(0, 1, n)
    preds = [
        Record(
            "p",
            0,
            i,
            None,
            orjson.dumps(
                {
                    "model": "m",
                    "id": f"p{i}",
                    "timestamp": 1000.0 + i,
                    "features": {"x": float(xs[i]), "region": "a" if i % 3 else "b"},
                    "prediction": int(xs[i] > 0),
                    "score": float(1 / (1 + np.exp(-2 * xs[i]))),
                }
            ),
            0.0,
        )
        for i in range(n)
    ]
    labels = [
        Record("l", 0, i, None, orjson.dumps({"model": "m", "id": f"p{i}", "label": i % 2}), 0.0)
        for i in range(n)
    ]
    t = time.perf_counter()
    for k in range(0, n, 500):
        pipe.apply(preds[k : k + 500], now=5000.0)
    t_pred = time.perf_counter() - t
    t = time.perf_counter()
    for k in range(0, n, 500):
        pipe.apply(labels[k : k + 500], now=5000.0)
    t_lab = time.perf_counter() - t
    assert pipe.monitors["m"].label_stats.joined == n
    return n / t_pred, n / t_lab


def run(quick: bool = False) -> list[tuple[str, str, str, str]]:
    n_pending = 100_000 if quick else 1_000_000
    per_label, held = _pending(n_pending)
    pred_rate, label_rate = _throughput(20_000 if quick else 100_000)
    return [
        (
            f"{n_pending:,} pending unmatched labels (cap {n_pending:,})",
            "held after 10% over the cap",
            f"{held:,}",
            "== cap " + ("ok" if held == n_pending else "MISSED"),
        ),
        ("", "memory per pending label", f"{per_label:.0f} B", ""),
        (
            "label join vs prediction ingest (in memory)",
            "predictions decode+window",
            f"{pred_rate:,.0f} ev/s",
            "",
        ),
        ("", "labels decode+join+count", f"{label_rate:,.0f} labels/s", ""),
        ("", "ratio", f"{label_rate / pred_rate:.2f}x", ""),
    ]
