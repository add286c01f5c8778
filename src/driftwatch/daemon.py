"""``driftwatch run``: the long-running daemon.

It wires the parts together and runs the poll loop; each guarantee has one owner:

* :class:`~driftwatch.checkpointer.Checkpointer` — the commit protocol (state durable
  before its offsets are committed; dead letters acknowledged before that), written
  down once in its module docstring;
* :class:`~driftwatch.partitions.Partitions` — which partitions this replica owns:
  restore and seek on assignment, forget on revocation, the state lineage;
* :class:`~driftwatch.pipeline.Pipeline` — records in (never raising because of one),
  evaluations and alert edges out, the policy advancing only with its outbox rows;
* :class:`~driftwatch.sinks.webhook.WebhookSender` — delivery from the outbox, on its
  own thread, never blocking consumption.

The poll loop also watches the broker: while the consumer has not heard from it for
longer than the session timeout, ``/readyz`` answers 503 saying so and
``driftwatch_kafka_broker_up`` is 0; consumption resumes by itself when it is back.

``SIGHUP`` re-reads the config file and references between two polls (see
:mod:`driftwatch.reload`, where what a reload keeps, restarts and refuses is written down).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from apscheduler.schedulers.background import BackgroundScheduler
from kafka import KafkaProducer

from driftwatch.app import build_pipeline, ingest_token, input_names, webhook_targets
from driftwatch.checkpointer import Checkpointer
from driftwatch.config import Config
from driftwatch.errors import ConfigError, OutboxError
from driftwatch.monitor.history import (
    History,
    distributions,
    history_document,
    owned_models,
)
from driftwatch.monitor.telemetry import TelemetrySnapshot
from driftwatch.partitions import Partitions
from driftwatch.reload import (
    ReloadPlan,
    ReloadStatus,
    plan_reload,
    reference_digests,
)
from driftwatch.repartition import ModelRouter, Repartitioner, ensure_topic, partition_count
from driftwatch.sinks.http import HttpEndpoints
from driftwatch.sinks.ingest import CloudEventsIngest, abandon
from driftwatch.sinks.outbox import Outbox
from driftwatch.sinks.prometheus import (
    IngestCollector,
    IngestSnapshot,
    PrometheusExporter,
    ReloadCollector,
)
from driftwatch.sinks.webhook import WebhookSender
from driftwatch.sources.base import Consumer, RecordBatch
from driftwatch.sources.clients import client_problems, make_consumer, producer_options
from driftwatch.sources.kafka import KafkaDeadLetters, KafkaStateStore, _split
from driftwatch.state.checkpoint import CheckpointStore, FileStore

log = logging.getLogger(__name__)

#: How long delivered notification ids are remembered (so a re-derived one is not resent).
DELIVERED_RETENTION_SECONDS = 7 * 86_400


def misfire_grace(seconds: float) -> int:
    """APScheduler 3 wants a positive whole number of seconds: round up, at least 1."""
    return max(1, math.ceil(seconds))


class Daemon:
    def __init__(
        self,
        config: Config,
        on_ready: Callable[[Daemon], None] | None = None,
        config_path: Path | None = None,
    ) -> None:
        """``config_path``: the file ``config`` was read from, re-read on ``SIGHUP``."""
        problems = client_problems(config.kafka)
        if problems:
            raise ConfigError(problems)
        self.config = config
        self.config_path = config_path
        self.targets = webhook_targets(config)
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.on_ready = on_ready
        config.state.path.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(config.state.path / "outbox.sqlite3")
        self.dead_letters: KafkaDeadLetters | None = None
        self.repartitioner: Repartitioner | None = None
        #: which model a record names (its model, or its InferenceService): the re-keying
        #: stage routes by it, POST /v1/cloudevents accepts only these; replaced on reload
        self.router = ModelRouter(config.kafka, input_names(config))
        self.sender: WebhookSender | None = None
        self.digests = reference_digests(config)  # before the references are read
        self.pipeline = build_pipeline(config, self.outbox, None, self._wake_sender)
        #: webhooks with exported delivery series: only ever appended to (a reload adds
        #: new ones; removed ones keep their final counts), as the exporter reads it
        self.webhook_names = list(self.targets)
        self.exporter = PrometheusExporter(self._telemetry_snapshot, self.webhook_names)
        self.reload_status = ReloadStatus(success=True, last_success_at=time.time())
        self.exporter.registry.register(ReloadCollector(lambda: self.reload_status))
        self.ingest: CloudEventsIngest | None = None
        self.ingest_token = ingest_token(config)  # ConfigError (exit 2) if its env var is unset
        self.exporter.registry.register(IngestCollector(self._ingest_snapshot))
        #: the web page's recent evaluations per model (memory only, not checkpointed)
        self.history = History()
        self.http = HttpEndpoints(
            config.http.host,
            config.http.port,
            self.exporter.render,
            self.readiness,
            self.status,
            history=lambda q: history_document(self.history, self.pipeline, q.limit, q.since),
            distributions=lambda: distributions(self.pipeline),
            ingest=self._ingest_request if config.http.ingest else None,
            ingest_max_bytes=config.http.ingest_max_bytes,
        )
        #: the consumer's assignment (poll thread only; shared with Partitions) ...
        self.assignment: set[tuple[str, int]] = set()
        #: ... and an immutable copy, replaced whole, for the HTTP threads
        self.assignment_view: tuple[str, ...] = ()
        self.joined = False
        self.partitions: Partitions | None = None
        self.source: Consumer | None = None
        self.checkpointer: Checkpointer | None = None
        self.scheduler: BackgroundScheduler | None = None
        self._closers: list[Callable[[], None]] = []
        self.broker_down_since: float | None = None
        self._broker_lock = threading.Lock()

    # -- endpoints --------------------------------------------------------------------------
    def _telemetry_snapshot(self) -> TelemetrySnapshot:
        self._watch_broker()
        return self.pipeline.telemetry.snapshot()

    def readiness(self) -> tuple[bool, str]:
        self._watch_broker()
        down = self.broker_down_since
        if down is not None:
            return False, (
                f"not ready: no contact with the Kafka broker for {time.monotonic() - down:.0f}s"
                " (consumption resumes by itself when it is back)"
            )
        if not self.joined:
            return False, "not ready: waiting for the consumer group assignment"
        if self.partitions is not None and self.partitions.restoring:
            return False, "not ready: restoring partition state"
        if self.repartitioner is not None and not self.repartitioner.alive:
            return False, "not ready: the re-keying stage (repartition) has stopped"
        return True, f"ready: {len(self.assignment_view)} partition(s) assigned"

    def _watch_broker(self) -> None:
        """Broker contact, for /readyz and driftwatch_kafka_broker_up: checked on each poll
        turn and on each /readyz, /status and /metrics request (any thread), so it tells
        the truth even while the poll loop is blocked in a call to the broker."""
        source = self.source
        if source is None:
            return
        age = source.broker_contact_age()
        up = age is None or age <= max(source.session_timeout_seconds, 5.0)
        with self._broker_lock:
            if not up and self.broker_down_since is None:
                self.broker_down_since = time.monotonic() - (age or 0.0)
                log.warning("no contact with the Kafka broker for %.0fs; waiting for it", age)
            elif up and self.broker_down_since is not None:
                log.warning(
                    "Kafka broker reachable again after %.0fs; resuming",
                    time.monotonic() - self.broker_down_since,
                )
                self.broker_down_since = None
            self.pipeline.telemetry.set_broker(up, age)

    def _watch_dead_letters(self) -> None:
        if self.dead_letters is not None:
            dl = self.dead_letters
            self.pipeline.telemetry.set_dead_letters(
                {"sent": dl.sent, "failed": dl.failed, "lost": dl.lost}
            )

    def status(self) -> dict[str, Any]:
        out = self.pipeline.status()
        ready, why = self.readiness()
        out["ready"] = ready
        out["readiness"] = why
        out["assignment"] = list(self.assignment_view)
        out["config"] = {
            "path": None if self.config_path is None else str(self.config_path),
            **self.reload_status.to_dict(),
        }
        # exact counts; the lists are bounded (failed notifications are never deleted)
        box = self.outbox.undelivered(limit=100)
        out["webhooks"] = {
            "pending_count": box.pending_count,
            "failed_count": box.failed_count,
            "pending": [self._outbox_item(i) for i in box.pending],  # the oldest 100
            "failed": [self._outbox_item(i) for i in box.failed],  # the newest 100
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
            results = self.pipeline.evaluate(time.time())
        except Exception:  # a failing round must not kill the scheduler's job
            log.exception("evaluation failed")
        else:
            try:
                self.history.record([evaluation for evaluation, _ in results])
                # only the owned models: a model this replica lost (a rebalance) loses its
                # history, so a later return does not join old points to new ones
                self.history.retain(owned_models(self.pipeline))
            except Exception:  # the page's history must never cost an evaluation round
                log.exception("recording the evaluations for the web page failed")
        finally:
            self.exporter.observe_evaluation(time.perf_counter() - started)
            self._refresh_pending()

    def _delivered(self, webhook: str, outcome: str, seconds: float) -> None:
        self.pipeline.telemetry.count_delivery(webhook, outcome)
        self.exporter.observe_delivery(webhook, seconds)
        self._refresh_pending()

    def _refresh_pending(self) -> None:
        try:
            self.pipeline.telemetry.set_pending(self.outbox.pending_counts())
        except OutboxError as exc:  # the gauge keeps its last value; the outbox logs its own
            log.debug("outbox unreadable for the pending gauge: %s", exc)

    def _wake_sender(self) -> None:
        if self.sender is not None:
            self.sender.wake()

    # -- the poll loop ------------------------------------------------------------------------
    def _store(self) -> CheckpointStore:
        cfg = self.config
        if cfg.state.backend == "kafka":
            store = KafkaStateStore(
                cfg.kafka.bootstrap_servers, cfg.state.topic, producer_options(cfg.kafka)
            )
            self._closers.append(store.close)
            return store
        return FileStore(cfg.state.path / "checkpoints")

    def run(self) -> int:
        cfg = self.config
        self.http.start()
        log.info(
            "serving the page on http://%s:%d/ (and /metrics, /healthz, /readyz, /status)",
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
                producer_options(cfg.kafka),
                cfg.kafka.max_event_bytes,
            )
            self.pipeline.attach_dead_letters(self.dead_letters)
        if cfg.kafka.repartitions:
            self._start_repartitioner()
        if cfg.http.ingest:
            self._start_ingest()
        self.source = source = make_consumer(
            cfg.kafka,
            [
                cfg.kafka.monitored_topic,
                *([cfg.kafka.label_topic] if cfg.kafka.label_topic else []),
            ],
        )
        self.partitions = partitions = self._partitions(source)
        self.checkpointer = checkpointer = Checkpointer(
            partitions, source, cfg.state.checkpoint_interval_seconds, self.dead_letters
        )
        self.scheduler = scheduler = BackgroundScheduler(daemon=True)
        scheduler.add_job(
            self.evaluate,
            "interval",
            seconds=cfg.evaluation.interval_seconds,
            id="evaluate",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=misfire_grace(cfg.evaluation.misfire_grace_seconds),
        )
        scheduler.start()
        clean = False
        try:
            while not self.stop_event.is_set():
                batches = source.poll(0.5)
                restored = self._rebalanced(source, partitions, batches)
                self.pipeline.telemetry.consumer_alive(time.time(), len(partitions.owned))
                self._watch_broker()
                self._watch_dead_letters()
                batches = partitions.filter(batches, restored)
                if batches:
                    self.pipeline.apply_batches(batches)
                    partitions.advance(batches)
                checkpointer.commit_durable()
                checkpointer.tick()
                if self.reload_event.is_set() and not self.stop_event.is_set():
                    self.reload_event.clear()
                    self.reload()
            clean = True
        finally:
            log.info("shutting down: final evaluation, checkpoint and offset commit")
            scheduler.shutdown(wait=True)
            self.evaluate()
            try:
                if clean:
                    checkpointer.final()
            finally:
                self._close(source)
        return 0

    def _close(self, source: Consumer) -> None:
        """Close every part; one that fails (a dead broker) must not skip the others."""
        closers: list[Callable[[], object]] = [source.close]
        if self.repartitioner is not None:
            closers.append(self.repartitioner.stop)
        if self.dead_letters is not None:
            closers.append(self.dead_letters.close)
        closers += self._closers
        if self.sender is not None:
            closers.append(self.sender.stop)
        closers += [self.http.stop, self.outbox.close]
        for close in closers:
            try:
                close()
            except Exception:
                log.exception(
                    "shutting down: closing %s failed", getattr(close, "__qualname__", close)
                )

    def _rebalanced(
        self, source: Consumer, partitions: Partitions, batch: list[RecordBatch]
    ) -> set[int]:
        restored: set[int] = set()
        for kind, parts in source.rebalances():
            # an empty change (kafka-python's first "revoked") is no news for an operator
            log.log(
                logging.INFO if parts else logging.DEBUG,
                "partitions %s: %s",
                kind,
                sorted(f"{t}/{p}" for t, p in parts),
            )
            if kind == "assigned":
                self.assignment |= parts
                restored |= partitions.assigned(parts, batch)
                if not self.joined:
                    self.joined = True
                    if self.on_ready is not None:
                        self.on_ready(self)
            else:
                if self.checkpointer is not None:
                    self.checkpointer.wait()
                self.assignment -= parts
                partitions.revoked(parts)
                # the page's history of models that moved away (given back later, they
                # would join old points to new ones)
                self.history.retain(owned_models(self.pipeline))
            self.assignment_view = tuple(sorted(f"{t}/{p}" for t, p in self.assignment))
        return restored

    # -- reload --------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the config file and references and apply them (poll-loop thread, between
        two polls; see :mod:`driftwatch.reload`). False if the reload was refused: the
        running config is kept, the problems are logged naming their keys and counted."""
        if self.config_path is None:
            log.warning("config reload requested, but this daemon was not started from a file")
            return False
        log.info("reloading the config from %s", self.config_path)
        try:
            plan = plan_reload(self.config_path, self.config, self.pipeline, self.digests)
            names = list(plan.pipeline.monitors)
            owned = None if self.partitions is None else self.partitions.models_owned(names)
            # the swap: raises, changing nothing, if the state cannot move over
            changes = self.pipeline.adopt(plan.pipeline, plan.keep, owned)
        except ConfigError as exc:
            return self._refused(exc.problems)
        except Exception as exc:  # a bug must not stop the daemon: the old config runs on
            log.exception("config reload failed unexpectedly")
            return self._refused([f"(internal error) {type(exc).__name__}: {exc}"])
        self.reload_status = self.reload_status.succeeded(time.time())
        self._adopted(plan, *changes)
        return True

    def _refused(self, problems: list[str]) -> bool:
        log.error("config reload refused: %s (the running config is kept)", "; ".join(problems))
        self.reload_status = self.reload_status.failed(problems)
        return False

    def _adopted(
        self, plan: ReloadPlan, restarted: list[str], added: list[str], removed: list[str]
    ) -> None:
        """The pipeline runs the new config: the daemon's parts follow it."""
        old, self.config = self.config, plan.config
        self.digests = plan.digests
        self.targets = plan.targets
        if self.sender is not None:
            self.sender.targets = plan.targets
        # models added, removed or their services renamed: records route by the new names
        self.router = ModelRouter(self.config.kafka, input_names(self.config))
        if self.repartitioner is not None:
            self.repartitioner.router = self.router
        self.webhook_names.extend(n for n in plan.targets if n not in self.webhook_names)
        for name in restarted:
            log.info("model %s: %s changed: window restarted", name, plan.restart[name])
        for name in added:
            log.info("model %s: added", name)
        for name in removed:
            log.info("model %s: removed from the config: no longer monitored", name)
        log.info(
            "config reloaded from %s: %d model(s) kept with their state, %d restarted, "
            "%d added, %d removed",
            self.config_path,
            len(plan.keep),
            len(restarted),
            len(added),
            len(removed),
        )
        if self.partitions is not None:
            self.partitions.mark_relaid([*restarted, *added])
        self._remember_relaid([*restarted, *added])
        try:
            self._reschedule(old)
        except Exception:  # the new config runs; only its evaluation schedule lags
            log.exception("the evaluation schedule could not follow the reload")
        if self.checkpointer is not None:
            self.checkpointer.set_interval(self.config.state.checkpoint_interval_seconds)
            if (restarted or added or removed) and not self.checkpointer.now():
                log.warning("the checkpoint after the reload is postponed to the next tick")

    def _ingest_snapshot(self) -> IngestSnapshot:
        kafka = self.config.kafka
        pipeline = self.pipeline
        owned = pipeline.owned
        cloudevents = kafka.format == "cloudevents"
        pending: dict[str, int] = {}
        dropped: dict[str, dict[str, int]] = {}
        skipped: dict[str, int] = {}
        with pipeline._lock:  # the poll thread mutates the fronts under it
            for name, m in pipeline.monitors.items():
                if owned is not None and name not in owned:
                    continue
                skipped[name] = m.front.duplicates
                has = m.front.has_pairs
                pending[name] = m.front.pairs.pending if has else 0
                dropped[name] = dict(m.front.pairs.dropped) if has else {}
        r = self.repartitioner
        ingest = self.ingest
        return IngestSnapshot(
            pairs_pending=pending if cloudevents else None,
            pairs_dropped=dropped if cloudevents else None,
            copies_skipped=skipped if kafka.repartitions else None,
            copied=None if r is None else (r.copied, r.unrouted, r.retries),
            http=None if ingest is None else {**ingest.rejected, 202: ingest.accepted},
        )

    def _ingest_request(self, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        ingest = self.ingest
        if ingest is None:  # starting: the producer is not there yet
            return 503, b'{"error": "unavailable", "detail": "starting"}'
        return ingest.handle(headers, body)

    def _start_ingest(self) -> None:
        """``POST /v1/cloudevents``: a producer whose every record waits for ``acks=all``."""
        kafka = self.config.kafka
        opts = _split(producer_options(kafka), KafkaProducer.DEFAULT_CONFIG)
        opts.update(acks="all", max_block_ms=5000, linger_ms=0)
        opts["max_request_size"] = max(
            int(opts.get("max_request_size", 0)), 2 * self.config.http.ingest_max_bytes + 65_536
        )
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, **opts)
        # a 503'd event may still sit in its buffer: never wait for a dead broker
        self._closers.append(lambda: abandon(producer))
        self.ingest = CloudEventsIngest(
            kafka.prediction_topic,
            producer,
            max_bytes=self.config.http.ingest_max_bytes,
            token=self.ingest_token,
            known=lambda service: service in self.router.services,
        )
        log.info("accepting CloudEvents on POST /v1/cloudevents into %s", kafka.prediction_topic)

    def _start_repartitioner(self) -> None:
        """Records not keyed by model: copy them, keyed by model, into the topic this
        replica monitors (``repartition``), which is created if missing."""
        kafka = self.config.kafka
        count = ensure_topic(kafka, partition_count(kafka, self.stop_event))
        log.info(
            "%s is not keyed by model: re-keying it into %s (%d partitions)",
            kafka.prediction_topic,
            kafka.monitored_topic,
            count,
        )
        self.repartitioner = Repartitioner(kafka, self.router)
        self.repartitioner.start()

    def _partitions(self, source: Any) -> Partitions:
        cfg = self.config
        partitions = Partitions(
            self.pipeline,
            source,
            self._store(),
            cfg.kafka.monitored_topic,
            cfg.kafka.label_topic,
            self.assignment,
        )
        partitions.mark_relaid(self._relaid_on_disk())
        return partitions

    # -- models a reload restarted, remembered across a crash ------------------------------
    @property
    def _relaid_path(self) -> Path:
        return self.config.state.path / "relaid.json"

    def _remember_relaid(self, models: list[str]) -> None:
        """Record the layout each restarted model moved to: if the process dies before a
        checkpoint of the new layout, the next start must restart those models' windows
        from the older checkpoints rather than refuse them (exit 3). Kept for the models
        of the current config only; an entry applies only while the fingerprint matches."""
        monitors = self.pipeline.monitors
        known = {m: f for m, f in self._read_relaid().items() if m in monitors}
        known.update({m: monitors[m].fingerprint for m in models if m in monitors})
        try:
            tmp = self._relaid_path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(known))
            os.replace(tmp, self._relaid_path)
        except OSError as exc:
            log.warning("could not record the reloaded models in %s: %s", self._relaid_path, exc)

    def _read_relaid(self) -> dict[str, str]:
        try:
            data = orjson.loads(self._relaid_path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("ignoring %s: %s", self._relaid_path, exc)
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _relaid_on_disk(self) -> list[str]:
        """Models restarted by a reload whose layout is still the configured one."""
        monitors = self.pipeline.monitors
        return [
            m
            for m, f in self._read_relaid().items()
            if m in monitors and monitors[m].fingerprint == f
        ]

    def _reschedule(self, old: Config) -> None:
        """Apply a changed evaluation interval, then evaluate at once with the new config."""
        scheduler = self.scheduler
        if scheduler is None or not scheduler.running:
            return
        new = self.config.evaluation
        if new.interval_seconds != old.evaluation.interval_seconds:
            scheduler.reschedule_job("evaluate", trigger="interval", seconds=new.interval_seconds)
        scheduler.modify_job(
            "evaluate",
            misfire_grace_time=misfire_grace(new.misfire_grace_seconds),
            next_run_time=datetime.now(timezone.utc),
        )

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self.stop_event.set()

        def hangup(signum: int, frame: FrameType | None) -> None:
            self.reload_event.set()  # the poll loop reloads between two polls

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        if self.config_path is not None and hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, hangup)  # else SIGHUP keeps its default: exit
