"""Partition ownership: restore on assignment, forget on revocation, checkpoint, commit.

Runs on the poll-loop thread only (it calls blocking consumer methods: seek, position).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from driftwatch.errors import CheckpointError, ConfigError
from driftwatch.pipeline import Pipeline
from driftwatch.sources.base import RecordBatch
from driftwatch.sources.kafka import partition_of
from driftwatch.state.checkpoint import (
    CheckpointStore,
    ModelState,
    PartitionCheckpoint,
    checkpoint_key,
)

log = logging.getLogger(__name__)

TP = tuple[str, int]


class PartitionedSource(Protocol):
    """What :class:`Partitions` needs of the consumer (the Kafka library is a detail)."""

    def partitions(self, topic: str) -> int | None: ...

    def seek(self, topic: str, partition: int, offset: int) -> None: ...

    def position(self, topic: str, partition: int) -> int: ...


class Partitions:
    """Which partitions (and so which models) this replica owns, and their checkpoints.

    A partition number ``p`` covers partition ``p`` of the prediction topic and of the
    label topic (co-partitioned: both keyed by model, same partition count).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        source: PartitionedSource,
        store: CheckpointStore,
        prediction_topic: str,
        label_topic: str | None,
        assignment: set[TP],
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.store = store
        self.prediction_topic = prediction_topic
        self.topics = [prediction_topic, *([label_topic] if label_topic else [])]
        self.owned: set[int] = set()
        self.count: int | None = None  # partitions of the prediction topic
        self.restoring = False
        #: the consumer's current assignment: the daemon's set, updated in place
        self.assignment = assignment
        self.positions: dict[TP, int] = {}  # next offset to consume, per topic-partition
        #: per partition: the offsets and alert states of its last checkpoint
        self._saved: dict[int, tuple[dict[str, int], dict[str, Any]]] = {}
        #: models whose layout a config reload changed (restarted or added) in this process:
        #: a checkpoint of one made under another layout predates the reload, so it starts
        #: that model empty instead of being refused (see :meth:`_stale_states`)
        self.relaid: set[str] = set()
        pipeline.own(())

    def models_of(self, partition: int) -> list[str]:
        assert self.count is not None
        return [m for m in self.pipeline.monitors if partition_of(m, self.count) == partition]

    def mark_relaid(self, models: Iterable[str]) -> None:
        """A config reload changed these models' layout (restarted or added them)."""
        self.relaid |= set(models)

    def models_owned(self, models: Iterable[str]) -> frozenset[str]:
        """Of these models, those on a partition this replica owns (after a reload)."""
        if self.count is None:
            return frozenset()
        count = self.count
        return frozenset(m for m in models if partition_of(m, count) in self.owned)

    def _ensure_count(self) -> int:
        """The prediction topic's partition count; the label topic must have as many
        (co-partitioned), else :class:`ConfigError` (exit 2): a model's labels would
        arrive on a partition another replica owns, and never join."""
        if self.count is None:
            counts = {t: self.source.partitions(t) for t in self.topics}
            count = counts[self.prediction_topic]
            if count is None:
                raise CheckpointError(f"topic {self.prediction_topic} has no partitions yet")
            for topic, n in counts.items():
                if n is not None and n != count:
                    raise ConfigError(
                        [
                            f"kafka.label_topic: topic {topic} has {n} partition(s) but "
                            f"{self.prediction_topic} has {count}: labels of a model must "
                            "arrive on the same partition number as its predictions "
                            "(co-partitioned topics; create the label topic with "
                            f"{count} partitions)"
                        ]
                    )
            self.count = count
            self.pipeline.route(lambda model: partition_of(model, count))
            return count
        return self.count

    def assigned(self, parts: frozenset[TP], batch: Sequence[RecordBatch] = ()) -> set[int]:
        """Take over partitions: restore each one's checkpoint and seek to its offsets.
        Returns the partitions restored from a checkpoint (their records in the current
        ``batch`` predate the seek and must be dropped). A partition without one starts
        empty, at the first record of ``batch`` it has (applied next), else at the
        consumer's position."""
        for b in reversed(batch):
            if (b.topic, b.partition) in parts and len(b):
                self.positions[(b.topic, b.partition)] = b.offsets[0]
        numbers = {p for t, p in parts if t == self.prediction_topic} - self.owned
        if not numbers:
            return set()
        self._ensure_count()
        self.restoring = True
        restored = set()
        try:
            refresh = getattr(self.store, "refresh", None)
            if refresh is not None:
                refresh()
            for p in sorted(numbers):
                if self._restore(p):
                    restored.add(p)
                self.owned.add(p)
                self.pipeline.own((self.pipeline.owned or frozenset()) | set(self.models_of(p)))
        finally:
            self.restoring = False
        return restored

    def _restore(self, p: int) -> bool:
        key = checkpoint_key(self.prediction_topic, p)
        blob = self.store.load(key)
        models = self.models_of(p)
        if blob is None:
            self.pipeline.reset(models, owned=True, lineage=True)
            if models:
                log.info(
                    "partition %d: no checkpoint; starting its %d model(s) empty", p, len(models)
                )
                # The new notification lineage is durable before anything can fire in it,
                # so a firing re-derived after a crash keeps its id.
                self._initial_checkpoint(p)
            return False
        self.pipeline.reset(models, owned=True)
        started = time.perf_counter()
        cp = PartitionCheckpoint.decode(blob, key)
        if cp.topic != self.prediction_topic or cp.partition != p:
            raise CheckpointError(
                f"{key}: holds {cp.topic}/{cp.partition}, not {self.prediction_topic}/{p}"
            )
        stale = self._stale_states(cp.models)
        states = {m: st for m, st in cp.models.items() if m not in stale}
        try:
            self.pipeline.restore(states, cp.alerts)
        except ValueError as exc:
            raise CheckpointError(f"{key}: {exc}") from None
        for topic in self.topics:
            tp = (topic, p)
            if tp not in self.assignment:
                continue
            offset = cp.offsets.get(topic, self.positions.get(tp))
            if offset is not None:  # a topic the checkpoint predates: from the batch's first
                self.source.seek(topic, p, offset)
                self.positions[tp] = offset
        fresh = [m for m in models if m not in cp.alerts]
        if fresh:  # models added to the config since: a new lineage
            self.pipeline.new_lineage(fresh)
        if fresh or stale:  # durable at once
            self._initial_checkpoint(p)
        log.info(
            "partition %d: restored %d model(s) at offsets %s in %.3fs",
            p,
            len(cp.models),
            cp.offsets,
            time.perf_counter() - started,
        )
        return True

    def _stale_states(self, states: dict[str, ModelState]) -> set[str]:
        """Models of a checkpoint that a config reload has since given another layout (the
        checkpoint was written before the reload, or by a replica not yet reloaded): their
        window starts empty, as the reload itself did; their alert state is restored."""
        stale = set()
        monitors = self.pipeline.monitors
        for name in self.relaid & states.keys():
            saved = states[name][0].get("fingerprint")
            if name in monitors and saved is not None and saved != monitors[name].fingerprint:
                stale.add(name)
                log.info(
                    "model %s: its checkpoint predates the config reload that changed its "
                    "reference/window: window restarted",
                    name,
                )
        return stale

    def _initial_checkpoint(self, p: int) -> None:
        job = CheckpointJob(self.store, self.prediction_topic)
        offsets = self._offsets(p)
        models = self.models_of(p)
        states, alerts = self.pipeline.capture(models)
        cp = PartitionCheckpoint(self.prediction_topic, p, offsets, states, alerts)
        job.partitions.append(cp)
        job.write()
        self._saved[p] = (offsets, alerts)

    def _offsets(self, p: int) -> dict[str, int]:
        offsets = {}
        for topic in self.topics:
            tp = (topic, p)
            if tp not in self.assignment:
                continue
            if tp not in self.positions:
                self.positions[tp] = self.source.position(topic, p)
            offsets[topic] = self.positions[tp]
        return offsets

    def revoked(self, parts: frozenset[TP]) -> None:
        """Give up partitions: forget their models (the new owner restores them)."""
        numbers = {p for t, p in parts if t == self.prediction_topic} & self.owned
        for p in numbers:
            models = self.models_of(p)
            self.pipeline.own((self.pipeline.owned or frozenset()) - set(models))
            self.pipeline.reset(models, owned=False)
            self.owned.discard(p)
            for topic in self.topics:
                self.positions.pop((topic, p), None)
            self._saved.pop(p, None)

    def filter(self, batches: Sequence[RecordBatch], restored: set[int]) -> list[RecordBatch]:
        """Batches this replica should apply: of owned partitions, not from before a seek."""
        return [b for b in batches if b.partition in self.owned and b.partition not in restored]

    def advance(self, batches: Sequence[RecordBatch]) -> None:
        for b in batches:
            if len(b):
                self.positions[(b.topic, b.partition)] = b.next_offset

    def capture(self) -> CheckpointJob:
        """On the poll thread, between two applies: copy the state of every owned partition
        that changed since its last checkpoint, with the offsets it reflects (fast: no
        encoding). :meth:`CheckpointJob.write` then makes it durable, on any thread."""
        started = time.perf_counter()
        job = CheckpointJob(self.store, self.prediction_topic)
        for p in sorted(self.owned):
            offsets = self._offsets(p)
            job.safe.update({(t, p): o for t, o in offsets.items()})
            models = self.models_of(p)
            alerts_now = self.pipeline.alert_states(models)
            if self._saved.get(p) == (offsets, alerts_now):
                continue  # nothing applied or fired since its last checkpoint: already durable
            states, alerts = self.pipeline.capture(models)
            job.partitions.append(
                PartitionCheckpoint(self.prediction_topic, p, offsets, states, alerts)
            )
            self._saved[p] = (offsets, alerts)
        job.capture_seconds = time.perf_counter() - started
        return job

    def forget_saved(self) -> None:
        """A checkpoint write failed, or a reload changed the models: write every partition
        in full next time."""
        self._saved.clear()


class CheckpointJob:
    """Checkpoints captured on the poll thread, to encode and write on another."""

    def __init__(self, store: CheckpointStore, topic: str) -> None:
        self.store = store
        self.topic = topic
        self.partitions: list[PartitionCheckpoint] = []
        #: offsets that are durable once :meth:`write` returns
        self.safe: dict[TP, int] = {}
        self.capture_seconds = 0.0

    def write(self) -> dict[TP, int]:
        """Encode and store every captured partition; returns the offsets safe to commit."""
        started = time.perf_counter()
        size = 0
        for cp in self.partitions:
            blob = cp.encode()
            self.store.save(checkpoint_key(self.topic, cp.partition), blob)
            size += len(blob)
        if self.partitions:
            log.info(
                "checkpointed %d partition(s), %.1f MB: captured in %.2fs, written in %.2fs",
                len(self.partitions),
                size / 2**20,
                self.capture_seconds,
                time.perf_counter() - started,
            )
        return self.safe
