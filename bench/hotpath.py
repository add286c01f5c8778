"""Hot path under load: ingest throughput with evaluation and checkpoints running beside it.

In memory, no broker. 100 models (20 numerical features, 10,000-event windows) on a
100-partition prediction topic, each model on the partition Kafka's default partitioner
gives it (``partition_of``), so the pipeline checks the routing like the daemon's. The
main thread ingests pre-encoded records the way the daemon's poll loop does: polls of ten
500-record batches -> ``apply_batches`` -> ``Partitions.advance``.

* idle: nothing else runs (no evaluation, no checkpoints);
* loaded: a background thread evaluates every model every second (like the daemon's
  APScheduler job: fixed rate, a late round coalesced), and checkpoints are taken every
  10 s the daemon's way: ``Checkpointer.commit_durable()`` + ``tick()`` on the ingest
  thread after each apply (capture between two applies), ``CheckpointJob.write()``
  (encode + fsynced file write, ``FileStore``) on the checkpoint thread.

The windows are filled first (untimed), so both measure the steady state with eviction.
The two alternate in halves (idle, loaded, idle, loaded) so machine noise spreads evenly;
a checkpoint write still in flight is waited for before an idle half starts.
"""

from __future__ import annotations

import math
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.ingest import Row, encoded_events, model_config, rate, target
from driftwatch.app import build_pipeline
from driftwatch.checkpointer import Checkpointer
from driftwatch.partitions import CheckpointJob, Partitions
from driftwatch.pipeline import Pipeline
from driftwatch.sources.base import RecordBatch
from driftwatch.sources.kafka import partition_of
from driftwatch.state.checkpoint import FileStore

MODELS = 100
FEATURES = 20
WINDOW = 10_000
PARTITIONS = 100
BATCH = 500
BATCHES_PER_POLL = 10
CHUNKS_PER_MODEL = 2  # distinct pre-encoded batches per model, cycled
TOPIC = "predictions"
EVALUATE_EVERY = 1.0
CHECKPOINT_EVERY = 10.0


class _Consumer:
    """What Partitions and Checkpointer need of the consumer: a 100-partition topic."""

    def __init__(self) -> None:
        self.commits = 0

    def partitions(self, topic: str) -> int | None:
        return PARTITIONS

    def seek(self, topic: str, partition: int, offset: int) -> None:
        pass

    def position(self, topic: str, partition: int) -> int:
        return 0

    def commit(self, offsets: dict[tuple[str, int], int]) -> bool:
        self.commits += 1
        return True


class _Stream:
    """Pre-encoded records of every model, handed out as polls of RecordBatches (one model
    each, on its partition) with offsets that keep increasing per partition."""

    def __init__(self, models: list[str], ts: float) -> None:
        rng = np.random.default_rng(11)
        per_model = {
            m: encoded_events(rng, m, BATCH * CHUNKS_PER_MODEL, FEATURES, 0, ts) for m in models
        }
        self.pool: list[tuple[int, list[bytes | None], list[bytes | None], list[float]]] = []
        for c in range(CHUNKS_PER_MODEL):  # interleaved: consecutive polls touch other models
            for m in models:
                values: list[bytes | None] = list(per_model[m][c * BATCH : (c + 1) * BATCH])
                key = m.encode()
                self.pool.append((partition_of(m, PARTITIONS), values, [key] * BATCH, [ts] * BATCH))
        self.next_offset: dict[int, int] = defaultdict(int)
        self.i = 0

    def poll(self) -> list[RecordBatch]:
        out = []
        for _ in range(BATCHES_PER_POLL):
            p, values, keys, times = self.pool[self.i % len(self.pool)]
            self.i += 1
            first = self.next_offset[p]
            self.next_offset[p] = first + len(values)
            out.append(
                RecordBatch(TOPIC, p, list(range(first, first + len(values))), keys, values, times)
            )
        return out


class _TimedCheckpointer(Checkpointer):
    """The daemon's Checkpointer, recording how long each background write takes."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.writes: list[float] = []
        self.captures: list[float] = []

    def _write(self, job: CheckpointJob) -> None:
        self.captures.append(job.capture_seconds)
        t = time.perf_counter()
        super()._write(job)
        self.writes.append(time.perf_counter() - t)


class _Evaluator(threading.Thread):
    """``pipeline.evaluate(time.time())`` every second, fixed rate; a round that overruns
    its slot makes the missed ones coalesce into one (APScheduler's coalesce=True)."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(name="bench-evaluate", daemon=True)
        self.pipeline = pipeline
        self.stop = threading.Event()
        self.rounds: list[float] = []

    def run(self) -> None:
        due = time.monotonic()
        while not self.stop.wait(max(0.0, due - time.monotonic())):
            t = time.perf_counter()
            self.pipeline.evaluate(time.time())
            self.rounds.append(time.perf_counter() - t)
            due += EVALUATE_EVERY
            due = max(due, time.monotonic())  # coalesce missed runs


def _note(msg: str) -> None:
    print(f"  hotpath: {msg}", file=sys.stderr, flush=True)


class _HotPath:
    """The daemon's ingest side (pipeline, Partitions, Checkpointer on a FileStore)."""

    def __init__(self, work: Path) -> None:
        names = [f"model-{i:03d}" for i in range(MODELS)]
        cfg = model_config(work, names, FEATURES, WINDOW, "localhost:9092", TOPIC)
        self.pipeline = build_pipeline(cfg)
        consumer = _Consumer()
        self.checkpoints = work / "checkpoints"
        store = FileStore(self.checkpoints)
        assignment = {(TOPIC, p) for p in range(PARTITIONS)}
        self.partitions = Partitions(self.pipeline, consumer, store, TOPIC, None, assignment)
        self.partitions.assigned(frozenset(assignment))  # no checkpoints: empty, lineage
        self.checkpointer = _TimedCheckpointer(self.partitions, consumer, CHECKPOINT_EVERY)
        self.stream = _Stream(names, time.time())

    def fill(self) -> int:
        """Fill every window (untimed): both phases then measure with eviction. Returns
        the number of full windows."""
        t = time.perf_counter()
        for _ in range(math.ceil(MODELS * WINDOW * 1.1 / (BATCH * BATCHES_PER_POLL))):
            self.pipeline.apply_batches(self.stream.poll())
        _note(f"windows filled in {time.perf_counter() - t:.1f}s")
        return sum(m.window.events >= WINDOW for m in self.pipeline.monitors.values())

    def alone(self) -> tuple[list[float], list[float]]:
        """Evaluation rounds and state captures with nothing else running (the cost of the
        work itself, without lock waits or GIL sharing): three of each."""
        models = list(self.pipeline.monitors)
        rounds, captures = [], []
        for _ in range(3):
            t = time.perf_counter()
            self.pipeline.evaluate(time.time())
            rounds.append(time.perf_counter() - t)
            t = time.perf_counter()
            self.pipeline.capture(models)  # Partitions.capture's copy, minus its bookkeeping
            captures.append(time.perf_counter() - t)
        return rounds, captures

    def ingest(self, duration: float, loaded: bool) -> tuple[int, float, list[float]]:
        """The daemon's poll-loop turn for ``duration`` seconds: (events, seconds,
        ingest-thread pauses of the checkpoint ticks that started a write)."""
        pipeline, partitions, checkpointer = self.pipeline, self.partitions, self.checkpointer
        applied = 0
        pauses = []
        t = time.perf_counter()
        end = t + duration
        while time.perf_counter() < end:
            batches = partitions.filter(self.stream.poll(), set())
            applied += pipeline.apply_batches(batches)
            partitions.advance(batches)
            if loaded:
                checkpointer.commit_durable()
                started = time.perf_counter()
                if checkpointer.tick():
                    pauses.append(time.perf_counter() - started)
        return applied, time.perf_counter() - t, pauses

    def loaded(self, duration: float) -> tuple[int, float, list[float], list[float]]:
        """Ingest with evaluation and checkpoints: (events, seconds, checkpoint pauses,
        evaluation rounds); returns with no checkpoint write in flight."""
        evaluator = _Evaluator(self.pipeline)
        evaluator.start()
        try:
            n, s, pauses = self.ingest(duration, loaded=True)
        finally:
            evaluator.stop.set()
            evaluator.join()
            self.checkpointer.wait()
            self.checkpointer.commit_durable()
        return n, s, pauses, evaluator.rounds


def _ms(xs: list[float]) -> str:
    if not xs:
        return "none"
    return f"mean {1000 * sum(xs) / len(xs):.0f} ms, max {1000 * max(xs):.0f} ms"


def run(quick: bool = False) -> list[Row]:
    seconds = 6.0 if quick else 20.0
    with tempfile.TemporaryDirectory() as tmp:
        bench = _HotPath(Path(tmp))
        full = bench.fill()
        rounds_alone, captures_alone = bench.alone()
        idle_n = loaded_n = 0
        idle_s = loaded_s = 0.0
        rounds: list[float] = []
        pauses: list[float] = []
        bench.checkpointer._last = -math.inf  # the first loaded half starts with one due
        for _ in range(2):
            n, s, _ = bench.ingest(seconds / 2, loaded=False)
            idle_n, idle_s = idle_n + n, idle_s + s
            n, s, p, r = bench.loaded(seconds / 2)
            loaded_n, loaded_s = loaded_n + n, loaded_s + s
            pauses += p
            rounds += r
            _note(f"idle {rate(idle_n, idle_s)}, loaded {rate(loaded_n, loaded_s)} so far")
        files = len(list(bench.checkpoints.glob("*.dwck")))
    ratio = (loaded_n / loaded_s) / (idle_n / idle_s)
    checkpointer = bench.checkpointer
    return [
        (
            f"hot path: {MODELS} models x {FEATURES} features",
            f"ingest idle ({seconds:.0f} s: no evaluation, no checkpoints)",
            rate(idle_n, idle_s),
            "",
        ),
        (
            f"{WINDOW:,}-event windows ({full} full), {PARTITIONS} partitions",
            f"ingest loaded ({seconds:.0f} s: evaluate every 1 s, checkpoint every 10 s)",
            rate(loaded_n, loaded_s),
            "",
        ),
        ("", "  loaded / idle", f"{ratio:.2f}x", target(">= 0.80x", ratio, 0.80)),
        ("", f"evaluation round, {MODELS} models, loaded ({len(rounds)})", _ms(rounds), ""),
        ("", "evaluation round alone (no ingest)", _ms(rounds_alone), ""),
        ("", f"checkpoint pause on the ingest thread ({len(pauses)})", _ms(pauses), ""),
        ("", "  of which Partitions.capture()", _ms(checkpointer.captures), ""),
        ("", "state capture alone (no evaluation running)", _ms(captures_alone), ""),
        (
            "",
            f"checkpoint encode + fsync, writer thread ({files} files)",
            _ms(checkpointer.writes),
            "",
        ),
    ]
