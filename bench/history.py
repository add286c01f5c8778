"""A history with marked change points, for ``driftwatch backtest`` (README, Detection).

    python -m bench.history DIR     # writes DIR/reference.csv, DIR/driftwatch.yaml,
                                    #   DIR/history.jsonl
    driftwatch backtest --config DIR/driftwatch.yaml --input DIR/history.jsonl

The streams of ``python -m bench detect`` (20 features: uniform, normal, lognormal,
Student-t, integer, Poisson and categorical with rare categories), one event per second,
evaluated every 10 s (10 events). 23,000 stationary events, then four episodes: one
feature changes for 5,000 events (the line of the first changed event carries
``"change": true``), then 17,000 stationary events again. The window and the drift rule
are at the README's example window (5,000 events) and the config's defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import orjson
import yaml

from bench.detect import (
    CAT_FEATURE,
    CATEGORICAL,
    FEATURES,
    MODEL,
    NUMERICAL,
    TOPIC,
    WARMUP,
    WINDOW,
    _encode,
    _reference,
    generate,
)

STATIONARY = 23_000
EPISODE = 5_000
RECOVERY = 17_000
#: (scenario, feature) per episode, in order
EPISODES = [
    ("mean+1sd", "f04"),
    ("mean+0.5sd", "f00"),
    ("sd x1.5", "f08"),
    ("cat 10%->25%", CAT_FEATURE),
]
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def write(directory: Path, seed: int = 7) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    _reference(directory / "reference.csv")
    config = {
        "kafka": {"bootstrap_servers": ["localhost:9092"], "prediction_topic": TOPIC},
        "evaluation": {"interval_seconds": 10},
        "models": [
            {
                "name": MODEL,
                "reference": "reference.csv",
                "window": {"events": WINDOW},
                "features": dict.fromkeys(NUMERICAL, "numerical")
                | dict.fromkeys(CATEGORICAL, "categorical"),
            }
        ],
    }
    cfg_path = directory / "driftwatch.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    rng = np.random.default_rng(seed)
    segments: list[tuple[str | None, str, int]] = [(None, "", STATIONARY)]
    for scenario, feature in EPISODES:
        segments += [(scenario, feature, EPISODE), (None, "", RECOVERY)]
    out = directory / "history.jsonl"
    n = 0
    with out.open("wb") as fh:
        for change, feature, length in segments:
            if change is None:
                cols = generate(rng, length, None, "")
                lo = 0
            else:
                cols = generate(rng, WARMUP + length, change, feature)
                lo = WARMUP
            # _encode numbers ids and times by row: shift them to the history's position
            lines = _encode({f: cols[f][lo:] for f in FEATURES}, 0, length, T0 + n, seed)
            for i, line in enumerate(lines):
                event = orjson.loads(line)
                event["id"] = f"h{seed}-{n + i:08d}"
                if change is not None and i == 0:
                    event["change"] = True
                fh.write(orjson.dumps(event) + b"\n")
            n += length
    return cfg_path, out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    cfg, history = write(Path(argv[0]))
    print(f"wrote {history} ({history.stat().st_size:,} bytes) and {cfg}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
