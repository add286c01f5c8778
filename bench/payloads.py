"""Payload logs vs driftwatch's own events: the same instances through ``apply_batches``.

In memory, no broker: one model (4 features), the same seeded instances encoded three
ways and applied the way the daemon's monitoring stage does:

* driftwatch JSON on a keyed topic (the columnar decoder; the reference);
* driftwatch JSON re-keyed (``keyed_by_model: false``): the same plus the ``dw-src``
  copy check per record;
* KServe v1 payload logs (``format: cloudevents``), Kafka binary mode, 8 instances per
  request: parse, validate, join request to response, one event per instance.

Side by side in one run, alternating, best of 3, so the ratio is what to read.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.events.payloads import SOURCE_HEADER
from driftwatch.sources.base import RecordBatch

FEATURES = {"x1": "numerical", "x2": "numerical", "x3": "numerical", "color": "categorical"}
ORDER = list(FEATURES)
PER_REQUEST = 8
REQUEST = b"org.kubeflow.serving.inference.request"
RESPONSE = b"org.kubeflow.serving.inference.response"


def _instances(n: int) -> list[list[Any]]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, 3))
    colors = rng.choice(["red", "green", "blue"], n)
    return [[float(a), float(b), float(c), str(k)] for (a, b, c), k in zip(x, colors, strict=True)]


def _config(tmp: Path, **kafka: Any) -> Any:
    rows = _instances(4000)
    ref = pd.DataFrame(rows, columns=ORDER)
    ref["prediction"] = np.arange(len(ref)) % 2
    ref.to_csv(tmp / "ref.csv", index=False)
    data = {
        "kafka": {"bootstrap_servers": ["127.0.0.1:1"], "prediction_topic": "p", **kafka},
        "models": [
            {
                "name": "m",
                "reference": "ref.csv",
                "window": {"events": 10_000},
                "features": FEATURES,
                "inference_service": "m",
                "feature_order": ORDER,
            }
        ],
    }
    return parse_config(data, tmp)


def _json_batches(rows: list[list[Any]], headers: bool) -> list[RecordBatch]:
    values = [
        orjson.dumps(
            {"model": "m", "id": f"e{i}", "features": dict(zip(ORDER, r, strict=True)),
             "prediction": i % 2}
        )
        for i, r in enumerate(rows)
    ]  # fmt: skip
    out = []
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        n = len(chunk)
        hdrs = [[(SOURCE_HEADER, f"0:{start + i}".encode())] for i in range(n)] if headers else None
        topic = "p.by-model" if headers else "p"
        out.append(
            RecordBatch(topic, 0, list(range(start, start + n)), [b"m"] * n, chunk, [0.0] * n, hdrs)
        )
    return out


def _ce_batches(rows: list[list[Any]]) -> list[RecordBatch]:
    values: list[bytes] = []
    headers: list[list[tuple[str, bytes]]] = []
    for r in range(len(rows) // PER_REQUEST):
        part = rows[r * PER_REQUEST : (r + 1) * PER_REQUEST]
        for kind, body in (
            (REQUEST, {"instances": part}),
            (RESPONSE, {"predictions": [i % 2 for i in range(len(part))]}),
        ):
            values.append(orjson.dumps(body))
            headers.append(
                [
                    ("ce_specversion", b"1.0"),
                    ("ce_id", f"r{r}".encode()),
                    ("ce_type", kind),
                    ("ce_source", b"http://localhost:9081/"),
                    ("ce_inferenceservicename", b"m"),
                    ("content-type", b"application/json"),
                    (SOURCE_HEADER, f"0:{len(values)}".encode()),
                ]
            )
    out = []
    for start in range(0, len(values), 500):
        n = min(500, len(values) - start)
        out.append(
            RecordBatch(
                "p.by-model",
                0,
                list(range(start, start + n)),
                [b"m"] * n,
                values[start : start + n],
                [0.0] * n,
                headers[start : start + n],
            )
        )
    return out


def _rate(make: Callable[[], Any], batches: list[RecordBatch], events: int) -> float:
    pipe = make()
    t = time.perf_counter()
    applied = pipe.apply_batches(batches, now=time.time())
    elapsed = time.perf_counter() - t
    assert applied == events, (applied, events)
    return events / elapsed


def run(quick: bool = False) -> list[tuple[str, str, str, str]]:
    n = 16_000 if quick else 80_000
    rows = _instances(n)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        keyed = _config(tmp)
        unkeyed = _config(tmp, keyed_by_model=False)
        ce = _config(tmp, format="cloudevents")
        cases = {
            "driftwatch JSON, keyed": (lambda: build_pipeline(keyed), _json_batches(rows, False)),
            "driftwatch JSON, re-keyed copies": (
                lambda: build_pipeline(unkeyed),
                _json_batches(rows, True),
            ),
            f"KServe v1 payload logs ({PER_REQUEST}/request)": (
                lambda: build_pipeline(ce),
                _ce_batches(rows),
            ),
        }
        best = dict.fromkeys(cases, 0.0)
        for _ in range(3):
            for name, (make, batches) in cases.items():
                best[name] = max(best[name], _rate(make, batches, n))
    base = best["driftwatch JSON, keyed"]
    out = []
    for i, (name, r) in enumerate(best.items()):
        out.append(
            (
                "payload logs vs own events (in memory)" if i == 0 else "",
                name,
                f"{r:,.0f} ev/s",
                f"{r / base:.2f}x of keyed JSON",
            )
        )
    return out
