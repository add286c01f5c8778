"""Seeded synthetic events for the demo model ``credit-default``, before and after drift."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

MODEL = "credit-default"
FEATURES = {"income": "numerical", "age": "numerical", "region": "categorical"}
REGIONS = ["north", "south", "east", "west"]
_P_BEFORE = [0.4, 0.3, 0.2, 0.1]
_P_AFTER = [0.1, 0.2, 0.3, 0.4]


def sample(rng: np.random.Generator, n: int, drifted: bool) -> dict[str, Any]:
    """Columns of ``n`` events. Drift moves income up 50% and reshuffles regions; age stays."""
    income = rng.lognormal(mean=math.log(50_000), sigma=0.35, size=n) * (1.5 if drifted else 1.0)
    age = np.clip(np.round(rng.normal(42, 12, size=n)), 18, 90)
    region = rng.choice(REGIONS, size=n, p=_P_AFTER if drifted else _P_BEFORE)
    logit = -0.6 + 0.8 * np.log(income / 50_000) - 0.02 * (age - 42) + (region == "north") * 0.3
    score = 1 / (1 + np.exp(-logit))
    prediction = (score >= 0.5).astype(int)
    label = (rng.random(n) < score).astype(int)
    return {
        "income": income.round(2),
        "age": age.astype(int),
        "region": region,
        "score": score.round(4),
        "prediction": prediction,
        "label": label,
    }


def reference_frame(seed: int = 7, n: int = 5000) -> pd.DataFrame:
    return pd.DataFrame(sample(np.random.default_rng(seed), n, drifted=False))


def events(
    rng: np.random.Generator, n: int, drifted: bool, start_id: int, ts: float
) -> list[dict[str, Any]]:
    cols = sample(rng, n, drifted)
    return [
        {
            "model": MODEL,
            "id": f"p-{start_id + i:09d}",
            "timestamp": ts,
            "features": {
                "income": float(cols["income"][i]),
                "age": int(cols["age"][i]),
                "region": str(cols["region"][i]),
            },
            "prediction": int(cols["prediction"][i]),
            "score": float(cols["score"][i]),
        }
        for i in range(n)
    ]
