"""Ingest: the daemon's consume+decode+window path vs a bare kafka-python + json.loads loop.

Both read the same topic from a local Tansu broker, alternately, each with its own
consumer group; the best of the runs of each is reported.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import orjson
from kafka import KafkaConsumer

from driftwatch.app import build_pipeline
from driftwatch.config import parse_config
from driftwatch.demo import synthetic
from driftwatch.demo.broker import Broker
from driftwatch.pipeline import Pipeline
from driftwatch.sources.kafka import JsonProducer, KafkaSource

#: The per-partition fetch size KafkaSource uses by default (2 x max_event_bytes + 64 KiB):
#: the bare loop gets the same, so the comparison is of the per-record work only.
FETCH = 2 * 1_048_576 + 65_536
FAST = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 10000}


def _join(consumer: KafkaConsumer) -> None:
    """Join the group and rewind, outside the timed part."""
    while not consumer.assignment():
        consumer.poll(100, max_records=1)
        if consumer.assignment():
            consumer.seek_to_beginning()


def _bare(bootstrap: str, topic: str, group: str, n: int) -> float:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        max_partition_fetch_bytes=FETCH,
        **FAST,
    )
    _join(consumer)
    seen = 0
    t = time.perf_counter()
    while seen < n:
        for recs in consumer.poll(500).values():
            for r in recs:
                json.loads(r.value)
            seen += sum(1 for _ in recs)
    elapsed = time.perf_counter() - t
    consumer.close(autocommit=False)
    return elapsed


def _daemon(bootstrap: str, topic: str, group: str, n: int, pipeline: Pipeline) -> float:
    source = KafkaSource([bootstrap], group, [topic], FAST)
    _join(source._consumer)
    seen = 0
    t = time.perf_counter()
    while seen < n:
        records = source.poll(0.5)
        pipeline.apply(records)
        seen += len(records)
    elapsed = time.perf_counter() - t
    source.close()
    return elapsed


def run(quick: bool = False) -> list[tuple[str, str, str, str]]:
    n = 30_000 if quick else 200_000
    topic = "bench-predictions"
    with Broker() as broker, tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref.csv"
        synthetic.reference_frame().to_csv(ref, index=False)
        cfg = parse_config(
            {
                "kafka": {"bootstrap_servers": [broker.bootstrap], "prediction_topic": topic},
                "models": [
                    {
                        "name": synthetic.MODEL,
                        "reference": str(ref),
                        "window": {"events": 100_000},
                        "features": dict(synthetic.FEATURES),
                    }
                ],
            },
            Path(tmp),
        )
        import numpy as np

        producer = JsonProducer([broker.bootstrap], linger_ms=20, batch_size=262_144)
        rng = np.random.default_rng(3)
        for start in range(0, n, 10_000):
            for ev in synthetic.events(rng, 10_000, False, start, time.time()):
                producer.send(topic, synthetic.MODEL, orjson.dumps(ev))
        producer.flush()
        producer.close()
        bare, ours = [], []
        for i in range(2):
            bare.append(_bare(broker.bootstrap, topic, f"bare-{i}", n))
            ours.append(_daemon(broker.bootstrap, topic, f"daemon-{i}", n, build_pipeline(cfg)))
    b, o = n / min(bare), n / min(ours)
    ratio = o / b
    return [
        (
            f"ingest {n:,} events (3 features)",
            "bare kafka-python + json.loads",
            f"{b:,.0f} ev/s",
            "",
        ),
        ("", "driftwatch consume+decode+window", f"{o:,.0f} ev/s", ""),
        ("", "ratio", f"{ratio:.2f}x", ">= 0.5x " + ("ok" if ratio >= 0.5 else "MISSED")),
    ]
