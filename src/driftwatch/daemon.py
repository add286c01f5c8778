"""``driftwatch run``: the long-running daemon.

The commit order, once:

1. The poll loop applies a batch of records to the windows (invalid ones are
   counted and handed to the dead-letter producer).
2. Evaluations run on the scheduler thread over window snapshots; a rule edge is
   written to the SQLite outbox (fsynced) before anything else happens to it.
3. Every ``state.checkpoint_interval_seconds``, and at shutdown, the poll loop
   a. flushes the dead-letter producer,
   b. copies the state of each owned partition that changed — windows, label joins,
      alert states — with the next offsets it reflects (between two applies),
   c. hands the copy to the checkpoint thread, which encodes and writes it durably
      (file: temp + fsync + rename; kafka: acknowledged by the state topic),
   d. and, once that thread reports it durable, commits those offsets to the group.
4. On assignment a partition's checkpoint is restored and the consumer seeks to its
   offsets, so the records after it are applied exactly once on top of it; a crash
   anywhere in 1-3 just means restarting from the previous checkpoint.
5. The webhook sender drains the outbox on its own thread. A notification's id is
   derived from its model, rule and firing number, so a firing re-derived after a
   restore is the same notification and the outbox (which keeps delivered ids for a
   week) sends it once.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from driftwatch.app import build_pipeline, webhook_targets
from driftwatch.config import Config
from driftwatch.errors import ConfigError
from driftwatch.partitions import CheckpointJob, Partitions
from driftwatch.sinks.http import HttpEndpoints
from driftwatch.sinks.outbox import Outbox
from driftwatch.sinks.prometheus import PrometheusExporter
from driftwatch.sinks.webhook import WebhookSender
from driftwatch.sources.base import drain
from driftwatch.sources.kafka import (
    KafkaDeadLetters,
    KafkaSource,
    KafkaStateStore,
    check_client_options,
)
from driftwatch.state.checkpoint import CheckpointStore, FileStore

log = logging.getLogger(__name__)

#: How long delivered notification ids are remembered (so a re-derived one is not resent).
DELIVERED_RETENTION_SECONDS = 7 * 86_400


class CheckpointWriter:
    """Encodes and writes captured checkpoints on its own thread, one job at a time, so a
    large state does not stall consumption; the poll thread commits what it reports."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._done: queue.SimpleQueue[dict[tuple[str, int], int] | None] = queue.SimpleQueue()

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, job: CheckpointJob) -> None:
        def run() -> None:
            try:
                self._done.put(job.write())
            except Exception:  # the offsets stay uncommitted; the next checkpoint retries
                log.exception("checkpoint write failed")
                self._done.put(None)

        self._thread = threading.Thread(target=run, name="driftwatch-checkpoint", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def drain(self) -> list[dict[tuple[str, int], int] | None]:
        return drain(self._done)


class Daemon:
    def __init__(self, config: Config, on_ready: Callable[[Daemon], None] | None = None) -> None:
        problems = check_client_options(config.kafka.client)
        if problems:
            raise ConfigError(problems)
        self.config = config
        self.targets = webhook_targets(config)
        self.stop_event = threading.Event()
        self.on_ready = on_ready
        config.state.path.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(config.state.path / "outbox.sqlite3")
        self.dead_letters: KafkaDeadLetters | None = None
        self.sender: WebhookSender | None = None
        self.pipeline = build_pipeline(config, self.outbox, None, self._wake_sender)
        self.exporter = PrometheusExporter(self.pipeline.telemetry.snapshot, list(self.targets))
        self.http = HttpEndpoints(
            config.http.host, config.http.port, self.exporter.render, self.readiness, self.status
        )
        self.assignment: set[tuple[str, int]] = set()
        self.joined = False
        self.partitions: Partitions | None = None
        self._closers: list[Callable[[], None]] = []
        self.writer = CheckpointWriter()

    # -- endpoints --------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        if not self.joined:
            return False, "not ready: waiting for the consumer group assignment"
        if self.partitions is not None and self.partitions.restoring:
            return False, "not ready: restoring partition state"
        return True, f"ready: {len(self.assignment)} partition(s) assigned"

    def status(self) -> dict[str, Any]:
        out = self.pipeline.status()
        ready, why = self.readiness()
        out["ready"] = ready
        out["readiness"] = why
        out["assignment"] = sorted(f"{t}/{p}" for t, p in self.assignment)
        items = self.outbox.listing(limit=100)
        out["webhooks"] = {
            "pending": [self._outbox_item(i) for i in items if i.status == "pending"],
            "failed": [self._outbox_item(i) for i in items if i.status == "failed"],
        }
        return out

    @staticmethod
    def _outbox_item(item: Any) -> dict[str, Any]:
        return {
            "id": item.id,
            "webhook": item.webhook,
            "attempts": item.attempts,
            "created_at": item.created_at,
            "next_attempt_at": item.next_attempt_at,
            "last_error": item.last_error,
        }

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self) -> None:
        started = time.perf_counter()
        try:
            self.pipeline.evaluate(time.time())
        except Exception:  # a failing round must not kill the scheduler's job
            log.exception("evaluation failed")
        finally:
            self.exporter.observe_evaluation(time.perf_counter() - started)
            self.pipeline.telemetry.set_pending(self.outbox.pending_counts())

    def _delivered(self, webhook: str, outcome: str, seconds: float) -> None:
        self.pipeline.telemetry.count_delivery(webhook, outcome)
        self.exporter.observe_delivery(webhook, seconds)
        self.pipeline.telemetry.set_pending(self.outbox.pending_counts())

    def _wake_sender(self) -> None:
        if self.sender is not None:
            self.sender.wake()

    # -- the poll loop ------------------------------------------------------------------------
    def _store(self) -> CheckpointStore:
        cfg = self.config
        if cfg.state.backend == "kafka":
            store = KafkaStateStore(cfg.kafka.bootstrap_servers, cfg.state.topic, cfg.kafka.client)
            self._closers.append(store.close)
            return store
        return FileStore(cfg.state.path / "checkpoints")

    def run(self) -> int:
        cfg = self.config
        self.http.start()
        log.info(
            "serving /metrics, /healthz, /readyz, /status on http://%s:%d",
            cfg.http.host,
            self.http.port,
        )
        self.outbox.purge_delivered(time.time() - DELIVERED_RETENTION_SECONDS)
        self.sender = WebhookSender(self.outbox, self.targets, self._delivered)
        self.sender.start()
        if cfg.kafka.dead_letter_topic:
            self.dead_letters = KafkaDeadLetters(
                cfg.kafka.bootstrap_servers,
                cfg.kafka.dead_letter_topic,
                cfg.kafka.client,
                cfg.kafka.max_event_bytes,
            )
            self.pipeline.dead_letters = self.dead_letters
        source = KafkaSource(
            cfg.kafka.bootstrap_servers,
            cfg.kafka.group_id,
            [
                cfg.kafka.prediction_topic,
                *([cfg.kafka.label_topic] if cfg.kafka.label_topic else []),
            ],
            cfg.kafka.client,
            cfg.kafka.max_poll_records,
            cfg.kafka.max_event_bytes,
        )
        self.partitions = partitions = Partitions(
            self.pipeline,
            source,
            self._store(),
            cfg.kafka.prediction_topic,
            cfg.kafka.label_topic,
            self.assignment,
        )
        scheduler = BackgroundScheduler(daemon=True)
        scheduler.add_job(
            self.evaluate,
            "interval",
            seconds=cfg.evaluation.interval_seconds,
            id="evaluate",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(cfg.evaluation.misfire_grace_seconds),
        )
        scheduler.start()
        last_checkpoint = time.monotonic()
        clean = False
        try:
            while not self.stop_event.is_set():
                records = source.poll(0.5)
                restored = self._rebalanced(source, partitions)
                self.pipeline.telemetry.consumer_alive(time.time(), len(partitions.owned))
                records = partitions.filter(records, restored)
                if records:
                    self.pipeline.apply(records)
                    partitions.advance(records)
                self._commit_written(source, partitions)
                due = time.monotonic() - last_checkpoint >= cfg.state.checkpoint_interval_seconds
                if due and not self.writer.busy():
                    self.writer.start(self._capture(partitions))
                    last_checkpoint = time.monotonic()
            clean = True
        finally:
            log.info("shutting down: final evaluation, checkpoint and offset commit")
            scheduler.shutdown(wait=True)
            self.evaluate()
            if clean:
                self._final_checkpoint(source, partitions)
            source.close()
            if self.dead_letters is not None:
                self.dead_letters.close()
            for close in self._closers:
                close()
            self.sender.stop()
            self.http.stop()
            self.outbox.close()
        return 0

    def _rebalanced(self, source: KafkaSource, partitions: Partitions) -> set[int]:
        restored: set[int] = set()
        for kind, parts in source.rebalances():
            log.info("partitions %s: %s", kind, sorted(f"{t}/{p}" for t, p in parts))
            if kind == "assigned":
                self.assignment |= parts
                restored |= partitions.assigned(parts)
                if not self.joined:
                    self.joined = True
                    if self.on_ready is not None:
                        self.on_ready(self)
            else:
                self.assignment -= parts
                partitions.revoked(parts)
        return restored

    def _capture(self, partitions: Partitions) -> CheckpointJob:
        if self.dead_letters is not None:
            self.dead_letters.flush()  # dead letters of the applied records are durable first
        return partitions.capture()

    def _commit_written(self, source: KafkaSource, partitions: Partitions) -> None:
        """Commit the offsets of checkpoints the writer has made durable (poll thread)."""
        for offsets in self.writer.drain():
            if offsets is None:
                partitions.forget_saved()
            else:
                self._commit(source, offsets)

    def _final_checkpoint(self, source: KafkaSource, partitions: Partitions) -> None:
        self.writer.join()
        self._commit_written(source, partitions)
        self._commit(source, self._capture(partitions).write())

    def _commit(self, source: KafkaSource, offsets: dict[tuple[str, int], int]) -> None:
        """Commit durable checkpoint offsets of the partitions still assigned."""
        source.commit({tp: o for tp, o in offsets.items() if tp in self.assignment})

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
