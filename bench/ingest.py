"""Ingest: driftwatch's consume+decode+window path against bare clients and Quix Streams.

One topic with one partition on a local Tansu broker holds N prediction events (model
``m``, 20 numerical features), produced once. Each consumer reads the whole topic from
the beginning with a consumer group of its own; the clock runs from the first poll after
the group join (join and rewind excluded) until N records are read (bare clients: each
decoded with ``orjson.loads``) or N events applied (driftwatch). Runs of the different
consumers alternate, two rounds, so machine noise spreads evenly; the best run counts.

Rows:

1. kafka-python with library defaults (``fetch_max_wait_ms=500``): slow by design on
   Tansu, so capped at 60 s of consumption and reported over what it read;
2. kafka-python with driftwatch's ``consumer_defaults()`` and its default poll size (500);
3. confluent-kafka ``Consumer.consume(5000)`` with ConfluentSource's librdkafka defaults;
4. a Quix Streams application that only JSON-deserializes and counts (timed from its
   first message to its N-th: Quix hides its group join);
5. driftwatch: ``KafkaSource`` -> ``Pipeline.apply_batches``;
6. driftwatch: ``ConfluentSource`` -> ``Pipeline.apply_batches``;
7. no Kafka: ``Pipeline.apply_batches`` over pre-built 500-record batches against
   ``list(map(orjson.loads, values))`` over the same values, side by side, at 3, 20 and
   50 features; and the per-event reference path ``Pipeline.apply_events``.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import pandas as pd
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic

from driftwatch.app import build_pipeline
from driftwatch.config import Config, parse_config
from driftwatch.demo.broker import Broker
from driftwatch.sources.base import RecordBatch
from driftwatch.sources.clients import CONFLUENT_POLL_RECORDS, KAFKA_PYTHON_POLL_RECORDS
from driftwatch.sources.kafka import JsonProducer, KafkaSource, consumer_defaults

Row = tuple[str, str, str, str]

MODEL = "m"
FEATURES = 20
#: kafka-python at its library defaults idles on every fetch against Tansu: capped
CAP_SECONDS = 60.0
#: any other consumer that has not read N records by then is reported as stuck
STUCK_SECONDS = 300.0
#: librdkafka settings for the bare consumer when ConfluentSource's cannot be read
#: (a copy of its defaults as of writing, without statistics)
CONFLUENT_FALLBACK = {
    "auto.offset.reset": "earliest",
    "max.partition.fetch.bytes": 2 * 1_048_576 + 65_536,
    "fetch.wait.max.ms": 10,
    "fetch.queue.backoff.ms": 10,
    "enable.partition.eof": False,
}


# -- data and config (shared with bench.hotpath) ----------------------------------------------
def feature_names(k: int) -> list[str]:
    return [f"f{i:02d}" for i in range(k)]


def write_reference(path: Path, k: int, rng: np.random.Generator, rows: int = 5000) -> None:
    """A reference with ``k`` N(0, 1) features, a score and a 0/1 prediction."""
    score = rng.random(rows).round(4)
    frame = {f: rng.normal(0, 1, rows).round(6) for f in feature_names(k)}
    frame["score"] = score
    frame["prediction"] = (score >= 0.5).astype(int)
    pd.DataFrame(frame).to_csv(path, index=False)


def model_config(
    workdir: Path, models: list[str], k: int, window: int, bootstrap: str, topic: str
) -> Config:
    reference = workdir / f"reference-{k}.csv"
    if not reference.exists():
        write_reference(reference, k, np.random.default_rng(7))
    return parse_config(
        {
            "kafka": {"bootstrap_servers": [bootstrap], "prediction_topic": topic},
            "models": [
                {
                    "name": name,
                    "reference": str(reference),
                    "window": {"events": window},
                    "features": dict.fromkeys(feature_names(k), "numerical"),
                }
                for name in models
            ],
        },
        workdir,
    )


def encoded_events(
    rng: np.random.Generator, model: str, n: int, k: int, start: int, ts: float
) -> list[bytes]:
    """``n`` prediction events of ``model`` with ``k`` N(0, 1) features, as JSON bytes."""
    names = feature_names(k)
    values = rng.normal(0, 1, (n, k)).round(6).tolist()
    scores = rng.random(n).round(4).tolist()
    dumps = orjson.dumps
    return [
        dumps(
            {
                "model": model,
                "id": f"p-{start + i:09d}",
                "timestamp": ts,
                "features": dict(zip(names, row, strict=True)),
                "prediction": int(score >= 0.5),
                "score": score,
            }
        )
        for i, (row, score) in enumerate(zip(values, scores, strict=True))
    ]


def record_batches(
    values: list[bytes], topic: str, partition: int, size: int, ts: float, first_offset: int = 0
) -> list[RecordBatch]:
    """``values`` as consecutive RecordBatches of ``size`` records."""
    out = []
    for start in range(0, len(values), size):
        chunk = values[start : start + size]
        offsets = list(range(first_offset + start, first_offset + start + len(chunk)))
        key = MODEL.encode()
        out.append(
            RecordBatch(topic, partition, offsets, [key] * len(chunk), chunk, [ts] * len(chunk))
        )
    return out


def rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f} ev/s" if seconds > 0 else "n/a"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def target(label: str, value: float | None, floor: float) -> str:
    """``label`` with ok/MISSED for ``value >= floor`` (MISSED when not measured)."""
    return f"{label} {verdict(value is not None and value >= floor)}"


def _note(msg: str) -> None:
    print(f"  ingest: {msg}", file=sys.stderr, flush=True)


# -- the topic ------------------------------------------------------------------------------
def _create_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, n: int) -> None:
    """N events, encoded with orjson, keyed by model (librdkafka's producer if installed:
    kafka-python's takes longer than all the consumers together)."""
    rng = np.random.default_rng(3)
    ts = time.time()
    chunk = 20_000
    try:
        from confluent_kafka import Producer
    except ImportError:
        producer = JsonProducer([bootstrap], linger_ms=20, batch_size=262_144)
        for start in range(0, n, chunk):
            for value in encoded_events(rng, MODEL, min(chunk, n - start), FEATURES, start, ts):
                producer.send(topic, MODEL, value)
        producer.flush()
        producer.close()
        return
    errors: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    fast = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "acks": "all",
            "enable.idempotence": False,
        }
    )
    key = MODEL.encode()
    for start in range(0, n, chunk):
        for value in encoded_events(rng, MODEL, min(chunk, n - start), FEATURES, start, ts):
            while True:
                try:
                    fast.produce(topic, value, key, on_delivery=report)
                    break
                except BufferError:
                    fast.poll(0.05)
        fast.poll(0)
    left = fast.flush(60)
    if left or errors:
        raise RuntimeError(f"producing failed: {left} unsent, errors {errors[:3]}")


# -- one consumer run: (records read in the timed part, seconds, read all N) ----------------
Result = tuple[int, float, bool]
Run = Callable[[str, str, str, int], Result]


def _join(consumer: KafkaConsumer) -> None:
    """kafka-python: join the group and rewind, outside the timed part."""
    while not consumer.assignment():
        consumer.poll(100, max_records=1)
        if consumer.assignment():
            consumer.seek_to_beginning()


def _kafka_python(options: dict[str, Any], cap: float) -> Run:
    def run(bootstrap: str, topic: str, group: str, n: int) -> Result:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            **options,
        )
        try:
            _join(consumer)
            loads = orjson.loads
            seen = 0
            t = time.perf_counter()
            deadline = t + cap
            while seen < n and time.perf_counter() < deadline:
                for recs in consumer.poll(500).values():
                    for r in recs:
                        loads(r.value)
                    seen += len(recs)
            return seen, time.perf_counter() - t, seen >= n
        finally:
            consumer.close(autocommit=False)

    return run


def _confluent_conf() -> tuple[dict[str, Any], str]:
    """ConfluentSource's librdkafka defaults, where they can be read."""
    try:
        from driftwatch.sources import confluent

        conf = dict(confluent._defaults(1_048_576))
        conf.pop("statistics.interval.ms", None)  # no stats callback in the bare loop
        return conf, "ConfluentSource defaults"
    except Exception:  # not written yet, or changed shape
        return dict(CONFLUENT_FALLBACK), "fetch.wait.max.ms 10"


def _confluent_bare(bootstrap: str, topic: str, group: str, n: int) -> Result:
    from confluent_kafka import Consumer

    conf, _ = _confluent_conf()
    consumer = Consumer(
        {
            **conf,
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    assigned: list[Any] = []
    loads = orjson.loads
    try:
        consumer.subscribe([topic], on_assign=lambda _c, parts: assigned.extend(parts))
        early = 0  # records handed out while joining (untimed, not counted)
        deadline = time.monotonic() + 60
        while not assigned and time.monotonic() < deadline:
            msg = consumer.poll(0)
            if msg is not None and msg.error() is None:
                early += 1
            time.sleep(0.005)
        seen = 0
        left = n - early
        t = time.perf_counter()
        stuck = t + STUCK_SECONDS
        while seen < left and time.perf_counter() < stuck:
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                value = msg.value()
                if msg.error() is None and value is not None:
                    loads(value)
                    seen += 1
        return seen, time.perf_counter() - t, seen >= left
    finally:
        consumer.close()


def _quix(state_dir: Path) -> Run:
    def run(bootstrap: str, topic: str, group: str, n: int) -> Result:
        from quixstreams import Application

        app = Application(
            broker_address=bootstrap,
            consumer_group=group,
            auto_offset_reset="earliest",
            state_dir=state_dir / group,
            loglevel="WARNING",
        )
        seen = 0
        times = [0.0, 0.0]

        def count(_value: Any) -> None:
            nonlocal seen
            seen += 1
            if seen == 1:
                times[0] = time.perf_counter()
            if seen >= n:
                times[1] = time.perf_counter()
                app.stop()

        sdf = app.dataframe(app.topic(topic, value_deserializer="json"))
        sdf.update(count)
        watchdog = threading.Timer(STUCK_SECONDS, app.stop)
        watchdog.start()
        try:
            app.run()
        finally:
            watchdog.cancel()
        if seen < n:
            times[1] = time.perf_counter()
        # timed from the first message: the first record itself is outside the clock
        return max(0, seen - 1), times[1] - times[0], seen >= n

    return run


def _daemon_kafka(cfg: Config) -> Run:
    def run(bootstrap: str, topic: str, group: str, n: int) -> Result:
        pipeline = build_pipeline(cfg)
        source = KafkaSource(
            [bootstrap], group, [topic], {}, max_poll_records=KAFKA_PYTHON_POLL_RECORDS
        )
        try:
            _join(source._consumer)
            source.rebalances()
            applied = 0
            t = time.perf_counter()
            stuck = t + STUCK_SECONDS
            while applied < n and time.perf_counter() < stuck:
                applied += pipeline.apply_batches(source.poll(0.5))
            return applied, time.perf_counter() - t, applied >= n
        finally:
            source.close()

    return run


def _daemon_confluent(cfg: Config) -> Run:
    def run(bootstrap: str, topic: str, group: str, n: int) -> Result:
        from driftwatch.sources.confluent import ConfluentSource

        pipeline = build_pipeline(cfg)
        source = ConfluentSource(
            [bootstrap], group, [topic], {}, max_poll_records=CONFLUENT_POLL_RECORDS
        )
        try:
            early = 0  # events applied while joining (untimed, not counted)
            deadline = time.monotonic() + 60
            while not any(kind == "assigned" for kind, _ in source.rebalances()):
                if time.monotonic() > deadline:
                    raise TimeoutError("ConfluentSource: no assignment within 60 s")
                early += pipeline.apply_batches(source.poll(0))
                time.sleep(0.005)
            applied = 0
            left = n - early
            t = time.perf_counter()
            stuck = t + STUCK_SECONDS
            while applied < left and time.perf_counter() < stuck:
                applied += pipeline.apply_batches(source.poll(0.5))
            return applied, time.perf_counter() - t, applied >= left
        finally:
            source.close()

    return run


def _available(name: str) -> str | None:
    """Why consumer ``name`` cannot run (None: it can)."""
    try:
        if name == "confluent":
            import confluent_kafka  # noqa: F401
        elif name == "quix":
            import quixstreams  # noqa: F401
        elif name == "driftwatch-confluent":
            import driftwatch.sources.confluent  # noqa: F401
    except ImportError as exc:
        if name == "driftwatch-confluent":
            return "ConfluentSource missing"
        return f"{exc.name or name} not installed"
    except Exception as exc:
        if name == "driftwatch-confluent":
            return f"ConfluentSource missing ({type(exc).__name__})"
        return f"{type(exc).__name__}: {exc}"[:80]
    return None


# -- Kafka rows -------------------------------------------------------------------------------
def _kafka_rows(n: int, workdir: Path) -> list[Row]:
    topic = "bench-predictions"
    runs: dict[str, Run] = {
        "kafka-python-defaults": _kafka_python({"auto_offset_reset": "earliest"}, CAP_SECONDS),
        "kafka-python-tuned": _kafka_python(
            {**consumer_defaults(), "max_poll_records": KAFKA_PYTHON_POLL_RECORDS}, STUCK_SECONDS
        ),
        "confluent": _confluent_bare,
        "quix": _quix(workdir / "quix-state"),
        "driftwatch-kafka": lambda *a: (0, 0.0, False),  # replaced once the broker is up
        "driftwatch-confluent": lambda *a: (0, 0.0, False),
    }
    missing = {name: _available(name) for name in runs}
    best: dict[str, Result] = {}
    failed: dict[str, str] = {k: v for k, v in missing.items() if v is not None}
    with Broker() as broker:
        cfg = model_config(workdir, [MODEL], FEATURES, 100_000, broker.bootstrap, topic)
        runs["driftwatch-kafka"] = _daemon_kafka(cfg)
        runs["driftwatch-confluent"] = _daemon_confluent(cfg)
        _create_topic(broker.bootstrap, topic)
        t = time.perf_counter()
        _produce(broker.bootstrap, topic, n)
        _note(f"produced {n:,} events in {time.perf_counter() - t:.1f}s")
        for round_ in range(2):
            for name, run in runs.items():
                if name in failed:
                    continue
                group = f"{name}-{round_}"
                wall = time.perf_counter()
                try:
                    count, seconds, done = run(broker.bootstrap, topic, group, n)
                except Exception as exc:
                    failed[name] = f"{type(exc).__name__}: {exc}"[:100]
                    _note(f"{name}: failed: {failed[name]}")
                    continue
                _note(
                    f"{name} run {round_ + 1}: {count:,} in {seconds:.2f}s = "
                    f"{rate(count, seconds)} (wall {time.perf_counter() - wall:.1f}s with join)"
                )
                if seconds > 0 and (
                    name not in best or count / seconds > best[name][0] / best[name][1]
                ):
                    best[name] = (count, seconds, done)

    def result(name: str) -> tuple[str, float | None]:
        if name in failed:
            return f"n/a ({failed[name]})", None
        if name not in best:
            return "n/a (no timed run)", None
        count, seconds, done = best[name]
        text = rate(count, seconds)
        if not done and name != "kafka-python-defaults":
            text += f" (stuck: read {count:,})"
        return text, count / seconds

    confluent_note = _confluent_conf()[1]
    r1, _ = result("kafka-python-defaults")
    r2, _ = result("kafka-python-tuned")
    r3, v3 = result("confluent")
    r4, v4 = result("quix")
    r5, v5 = result("driftwatch-kafka")
    r6, v6 = result("driftwatch-confluent")
    capped = not best.get("kafka-python-defaults", (0, 0.0, True))[2]
    rows: list[Row] = [
        (
            f"ingest {n:,} events x {FEATURES} features",
            "kafka-python defaults + orjson" + (" (60 s sample)" if capped else ""),
            r1,
            "",
        ),
        ("(Tansu, 1 partition, best of 2)", "kafka-python tuned + orjson", r2, ""),
        ("", f"confluent-kafka consume + orjson ({confluent_note})", r3, ""),
        ("", "Quix Streams (json, count)", r4, ""),
        (
            "",
            "driftwatch KafkaSource -> apply_batches",
            r5,
            target(">= 60,000", v5, 60_000),
        ),
        (
            "",
            "driftwatch ConfluentSource -> apply_batches",
            r6,
            target(">= 200,000", v6, 200_000),
        ),
    ]
    if v6 is not None and v3 is not None:
        ratio = v6 / v3
        rows.append(
            ("", "  vs bare confluent-kafka", f"{ratio:.2f}x", f">= 0.5x {verdict(ratio >= 0.5)}")
        )
    if v6 is not None and v4 is not None:
        ratio = v6 / v4
        rows.append(
            (
                "",
                "  vs Quix Streams",
                f"{ratio:.2f}x",
                f"> 1x {verdict(ratio > 1)}, moonshot 2x {verdict(ratio >= 2)}",
            )
        )
    return rows


# -- in-memory rows ---------------------------------------------------------------------------
def _best_side_by_side(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def _memory_case(k: int, n: int, workdir: Path, ts: float) -> list[Row]:
    """apply_batches vs orjson.loads over the same n events with k features."""
    cfg = model_config(workdir, [MODEL], k, 100_000, "localhost:9092", "p")
    pipeline = build_pipeline(cfg)
    values = encoded_events(np.random.default_rng(k), MODEL, n, k, 0, ts)
    batches = record_batches(values, "p", 0, 500, ts)
    loads = orjson.loads

    def apply() -> None:
        applied = 0
        for b in batches:  # one apply per poll of 500 records, as the daemon does
            applied += pipeline.apply_batches([b])
        if applied != n:
            raise RuntimeError(f"{k} features: applied {applied} of {n}")

    def parse() -> None:
        for b in batches:
            list(map(loads, cast("list[bytes]", b.values)))

    # librdkafka's default poll size (5,000) as one batch: the same events, and a
    # pipeline of its own
    big_pipeline = build_pipeline(cfg)
    big_batches = record_batches(values, "p", 0, 5000, ts)

    def apply_big() -> None:
        for b in big_batches:
            big_pipeline.apply_batches([b])

    apply()  # warm-up: fills the window, so the timed runs evict too (steady state)
    fns = [apply, parse]
    if k == 20:
        apply_big()
        fns.append(apply_big)
    t_apply, t_parse, *t_big = _best_side_by_side(fns, 3)
    v, ratio = n / t_apply, t_parse / t_apply
    floors = {20: 250_000, 50: 120_000}
    rows: list[Row] = [
        (
            f"in memory, {k} features" if k != 3 else f"in memory {n:,} events, 3 features",
            "apply_batches (500-record batches)",
            rate(n, t_apply),
            target(f">= {floors[k]:,}", v, floors[k]) if k in floors else "",
        ),
        ("", "list(map(orjson.loads, values))", rate(n, t_parse), ""),
        (
            "",
            "  apply_batches / orjson",
            f"{ratio:.2f}x",
            target(">= 0.5x", ratio, 0.5) if k == 20 else "",
        ),
    ]
    if t_big:
        rows.append(("", "apply_batches (5,000-record batches)", rate(n, t_big[0]), ""))
    if k == 20:  # the per-event reference path, once over (up to) 20k events
        m = min(n, 20_000)
        reference = build_pipeline(cfg)
        records = [r for b in batches[: m // 500] for r in b.records()]
        t = time.perf_counter()
        for start in range(0, m, 500):
            reference.apply_events(records[start : start + 500])
        t_events = time.perf_counter() - t
        rows.append(("", "apply_events (per-event reference)", rate(m, t_events), ""))
        rows.append(("", "  columnar speed-up", f"{t_events / m / (t_apply / n):.1f}x", ""))
    return rows


def _memory_rows(n: int, workdir: Path) -> list[Row]:
    ts = time.time()
    return [row for k in (3, 20, 50) for row in _memory_case(k, n, workdir, ts)]


def run(quick: bool = False) -> list[Row]:
    n_kafka = 40_000 if quick else 400_000
    n_memory = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rows = _kafka_rows(n_kafka, workdir)
        rows += _memory_rows(n_memory, workdir)
    return rows
