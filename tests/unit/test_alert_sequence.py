"""A seeded stream with an exact expected notification sequence: consecutive, cooldown,
one resolve per notified firing."""

from __future__ import annotations

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.sinks.outbox import Outbox
from tests.helpers import FEATURES, events, reference_frame
from tests.unit.test_pipeline import records

# S: stationary block, D: x1 shifted. Windows hold two blocks; one evaluation per block,
# ten minutes apart.
BLOCKS = "SSDDSSDDSSSSSSDDSS"


def run_stream(tmp_path, **alerts):
    reference_frame().to_csv(tmp_path / "ref.csv", index=False)
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": ["x:1"], "prediction_topic": "p"},
            "webhooks": {"retrain": {"url": "http://127.0.0.1:1/"}},
            "models": [
                {
                    "name": "m",
                    "reference": "ref.csv",
                    "window": {"events": 500},
                    "features": dict(FEATURES),
                    "drift": {"threshold": 0.2, "min_events": 200},
                    "alerts": alerts,
                    "webhooks": ["retrain"],
                }
            ],
        },
        tmp_path,
    )
    box = Outbox(tmp_path / "outbox.sqlite3")
    pipe = build_pipeline(cfg, outbox=box)
    sent, active = [], []
    for i, kind in enumerate(BLOCKS):
        shift = ("x1",) if kind == "D" else ()
        pipe.apply(records(events(100 + i, 250, shift=shift, start=250 * i)))
        [(_, notes)] = pipe.evaluate(600.0 * i)
        sent += [(i, n.rule, n.type) for n in notes]
        active.append(pipe.telemetry.snapshot().alert_active[("m", "feature_drift")])
    return sent, active, box


def test_consecutive_and_cooldown_give_the_exact_sequence(tmp_path):
    sent, active, box = run_stream(tmp_path, consecutive=2, cooldown_seconds=3600)
    # breaches at 2-4, 6-8, 14-16; fires at the second breach in a row. The firing at
    # 7 (t=4200 s) is within an hour of the one at 3 (t=1800 s): silent, and so is its
    # resolve; the one at 15 (t=9000 s) is not.
    assert sent == [
        (3, "feature_drift", "drift.detected"),
        (5, "feature_drift", "resolved"),
        (15, "feature_drift", "drift.detected"),
        (17, "feature_drift", "resolved"),
    ]
    assert [i for i, on in enumerate(active) if on] == [3, 4, 7, 8, 15, 16]
    assert len(box.listing()) == 4
    ids = [i.id for i in box.listing()]
    assert len(set(ids)) == 4


def test_without_cooldown_every_firing_notifies(tmp_path):
    sent, _, _ = run_stream(tmp_path, consecutive=1, cooldown_seconds=0)
    assert [(i, t) for i, _, t in sent] == [
        (2, "drift.detected"),
        (5, "resolved"),
        (6, "drift.detected"),
        (9, "resolved"),
        (14, "drift.detected"),
        (17, "resolved"),
    ]
