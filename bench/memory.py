"""Memory: a 1,000,000-event window over 50 numerical features, through the real ingest path."""

from __future__ import annotations

import gc

import numpy as np

from driftwatch.detectors import DriftRule
from driftwatch.events.schema import Prediction
from driftwatch.monitor import ModelMonitor, MonitorSpec
from driftwatch.windows.reference import ReferenceProfile


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def run(quick: bool = False) -> list[tuple[str, str, str, str]]:
    n_features, window, batch = 50, (100_000 if quick else 1_000_000), 5_000
    rng = np.random.default_rng(1)
    names = [f"f{i}" for i in range(n_features)]
    features = dict.fromkeys(names, "numerical")
    profile = ReferenceProfile.build(
        {f: rng.normal(0, 1, 10_000) for f in names}, features, "regression"
    )
    spec = MonitorSpec(
        "bench", "regression", features, DriftRule(min_events=1), window_events=window
    )
    gc.collect()
    before = rss_bytes()
    monitor = ModelMonitor(spec, profile)
    peak_window = 0
    for start in range(0, window + window // 10, batch):  # 10% past full: eviction steady state
        values = rng.normal(0.1, 1, (batch, n_features))
        events = [
            Prediction(
                "bench",
                str(start + i),
                float(start + i),
                dict(zip(names, row.tolist(), strict=True)),
                0.0,
            )
            for i, row in enumerate(values)
        ]
        monitor.ingest_batch(events)
        del events, values
        peak_window = max(peak_window, monitor.window.events)
    gc.collect()
    added = rss_bytes() - before
    mb = added / 2**20
    return [
        (
            f"window of {window:,} events x {n_features} features",
            "RSS added",
            f"{mb:.1f} MB",
            ("< 50 MB " + ("ok" if mb < 50 else "MISSED")) if not quick else "(quick)",
        ),
        ("", "events held / panes", f"{monitor.window.events:,} / {monitor.window.pane_count}", ""),
    ]
