"""Checkpoints: size and time for 100 models x 50 features, and restore (restart-to-ready) time.

Each model has a full 5,000-event window (the contract's example), filled through the
same binning the daemon uses. Checkpoint = capture (on the poll thread) + encode and
fsynced file write (on the checkpoint thread);
restore = building the pipeline from the config (loading 100 references) + reading,
decoding and restoring the checkpoint.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.state.checkpoint import FileStore, PartitionCheckpoint
from driftwatch.windows.reference import NumericalBins


def run(quick: bool = False) -> list[tuple[str, str, str, str]]:
    n_models, n_features, window = (20 if quick else 100), 50, 5000
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(n_features)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pd.DataFrame({f: rng.normal(0, 1, 10_000) for f in names}).to_csv(
            work / "ref.csv", index=False
        )
        cfg = parse_config(
            {
                "kafka": {"bootstrap_servers": ["x:1"], "prediction_topic": "p"},
                "models": [
                    {
                        "name": f"model-{i:03d}",
                        "task": "regression",
                        "reference": "ref.csv",
                        "window": {"events": window},
                        "features": dict.fromkeys(names, "numerical"),
                    }
                    for i in range(n_models)
                ],
            },
            work,
        )
        pipe = build_pipeline(cfg)
        for monitor in pipe.monitors.values():
            n = window + window // 10
            bins = np.empty((n, n_features + 1), dtype=np.int64)
            for j, f in enumerate(names):
                slot = monitor.profile.slot_bins(f)
                assert isinstance(slot, NumericalBins)
                bins[:, j] = slot.bin(rng.normal(0.1, 1, n)) + monitor.profile.offsets[j]
            bins[:, -1] = monitor.count_offset
            monitor.window.add(bins, np.arange(n, dtype=np.float64))
            monitor.events_total = n
        store = FileStore(work / "checkpoints")
        models = list(pipe.monitors)
        t = time.perf_counter()
        states, alerts = pipe.capture(models)
        t_capture = time.perf_counter() - t
        t = time.perf_counter()
        blob = PartitionCheckpoint("p", 0, {"p": 123}, states, alerts).encode()
        store.save("p-0", blob)
        t_write = time.perf_counter() - t

        t = time.perf_counter()
        fresh = build_pipeline(cfg)
        t_build = time.perf_counter() - t
        t = time.perf_counter()
        cp = PartitionCheckpoint.decode(store.load("p-0") or b"", "p-0")
        fresh.restore(cp.models, cp.alerts)
        t_restore = time.perf_counter() - t
        same = all(
            np.array_equal(pipe.monitors[m].window.totals, fresh.monitors[m].window.totals)
            for m in models
        )
    label = f"{n_models} models x {n_features} features, {window:,}-event windows"
    return [
        (label, "checkpoint size (zlib)", f"{len(blob) / 2**20:.1f} MB", ""),
        ("", "capture (the poll loop pauses)", f"{t_capture:.2f} s", ""),
        ("", "encode + fsync (background thread)", f"{t_write:.2f} s", ""),
        ("", "startup: load references, build", f"{t_build:.2f} s", ""),
        (
            "",
            "restore: read+decode+restore",
            f"{t_restore:.2f} s",
            "exact " + ("ok" if same else "MISSED"),
        ),
    ]
