"""The Kafka source and dead-letter sink: the only module that imports kafka-python.

Threading (kafka-python 3): the consumer belongs to the poll-loop thread. The
rebalance listener runs on the library's IO thread, so it only enqueues the
change; :meth:`KafkaSource.rebalances` hands the changes to the poll loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.admin import NewTopic
from kafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from driftwatch.sources.base import Record, drain

log = logging.getLogger(__name__)

TP = tuple[str, int]

#: Options driftwatch sets itself; ``kafka.client`` may not override them.
_RESERVED = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "key_deserializer",
        "value_deserializer",
        "key_serializer",
        "value_serializer",
        "max_poll_records",
    }
)


def check_client_options(options: Mapping[str, Any]) -> list[str]:
    """Problems with ``kafka.client`` keys, each naming the key path."""
    known = set(KafkaConsumer.DEFAULT_CONFIG) | set(KafkaProducer.DEFAULT_CONFIG)
    problems = []
    for key in options:
        if key in _RESERVED:
            problems.append(f"kafka.client.{key}: set by driftwatch; use the kafka.* key instead")
        elif key not in known:
            problems.append(f"kafka.client.{key}: unknown kafka-python option")
    return problems


def _split(options: Mapping[str, Any], defaults: Iterable[str]) -> dict[str, Any]:
    allowed = set(defaults)
    return {k: v for k, v in options.items() if k in allowed}


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, changes: queue.SimpleQueue[tuple[str, frozenset[TP]]]) -> None:
        self._changes = changes

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._changes.put(("revoked", frozenset((tp.topic, tp.partition) for tp in revoked)))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._changes.put(("assigned", frozenset((tp.topic, tp.partition) for tp in assigned)))


class KafkaSource:
    """Consumes raw records from the subscribed topics; commits offsets on request."""

    def __init__(
        self,
        bootstrap_servers: list[str],
        group_id: str,
        topics: list[str],
        client_options: Mapping[str, Any],
        max_poll_records: int = 500,
        max_record_bytes: int = 1_048_576,
    ) -> None:
        self.topics = topics
        self._changes: queue.SimpleQueue[tuple[str, frozenset[TP]]] = queue.SimpleQueue()
        opts = _split(client_options, KafkaConsumer.DEFAULT_CONFIG)
        # Fetch at least a whole maximal record per partition, so an oversized record
        # (which we dead-letter) can never wedge a partition.
        opts.setdefault("max_partition_fetch_bytes", max(1_048_576, 2 * max_record_bytes + 65_536))
        opts.setdefault("auto_offset_reset", "earliest")
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            max_poll_records=max_poll_records,
            **opts,
        )
        self._consumer.subscribe(topics, listener=_Listener(self._changes))

    def poll(self, timeout_seconds: float) -> list[Record]:
        batches = self._consumer.poll(timeout_ms=int(timeout_seconds * 1000))
        out: list[Record] = []
        for tp, records in batches.items():
            topic, partition = tp.topic, tp.partition
            for r in records:
                out.append(Record(topic, partition, r.offset, r.key, r.value, r.timestamp / 1000.0))
        return out

    def partitions(self, topic: str) -> int | None:
        """How many partitions ``topic`` has (None while the broker does not know it)."""
        parts = self._consumer.partitions_for_topic(topic)
        return len(parts) if parts else None

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(topic, partition), offset)

    def position(self, topic: str, partition: int) -> int:
        return int(self._consumer.position(TopicPartition(topic, partition)))

    def rebalances(self) -> list[tuple[str, frozenset[TP]]]:
        """Assignment changes since the last call, oldest first."""
        return drain(self._changes)

    def commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit ``next offset`` per partition; False (logged) if a rebalance got in the way."""
        if not offsets:
            return True
        payload = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()
        }
        try:
            self._consumer.commit(offsets=payload)
            return True
        except CommitFailedError as exc:
            log.warning("offset commit failed (rebalance in progress?): %s", exc)
            return False
        except KafkaError as exc:
            log.warning("offset commit failed: %s", exc)
            return False

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except KafkaError as exc:  # closing must not turn a clean shutdown into a crash
            log.warning("closing the consumer: %s", exc)


class KafkaDeadLetters:
    """Copies invalid records, unchanged, to the dead-letter topic with the reason in headers."""

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        client_options: Mapping[str, Any],
        max_record_bytes: int = 1_048_576,
    ) -> None:
        self.topic = topic
        opts = _split(client_options, KafkaProducer.DEFAULT_CONFIG)
        opts.setdefault("max_request_size", max(1_048_576, 4 * max_record_bytes))
        opts.setdefault("acks", "all")
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **opts)

    def send(self, record: Record, reason: str, detail: str) -> None:
        headers = [
            ("driftwatch-reason", reason.encode()),
            ("driftwatch-detail", detail[:500].encode("utf-8", "replace")),
            ("driftwatch-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        try:
            self._producer.send(self.topic, key=record.key, value=record.value, headers=headers)
        except KafkaError as exc:
            log.warning(
                "dead-letter copy of %s/%s/%s failed: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )

    def flush(self) -> None:
        self._producer.flush(timeout=30)

    def close(self) -> None:
        self._producer.close(timeout=10)


class JsonProducer:
    """Produces JSON events keyed by model (the demo producer and the tests' feeders)."""

    def __init__(self, bootstrap_servers: list[str], **options: Any) -> None:
        options.setdefault("linger_ms", 5)
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **options)

    def send(self, topic: str, key: str | None, value: bytes) -> None:
        self._producer.send(topic, key=None if key is None else key.encode(), value=value)

    def flush(self) -> None:
        self._producer.flush(timeout=30)

    def close(self) -> None:
        self._producer.close(timeout=10)


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and kafka-python's) picks for a key."""
    return int(murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


class KafkaStateStore:
    """Checkpoints in a compacted Kafka topic (``state.backend: kafka``), so whichever replica
    is assigned a partition can restore it.

    A checkpoint is split into chunks of at most 512 KiB (``{key}#{i}``), then a manifest
    (``{key}``: generation, chunk count, SHA-256) is written; compaction keeps the latest of
    each. Reading never trusts the broker's end offsets: the reader writes a unique
    sentinel record and reads the (single-partition) topic until it sees it, so it has
    read everything written before.
    """

    CHUNK = 512 * 1024

    def __init__(
        self, bootstrap_servers: list[str], topic: str, client_options: Mapping[str, Any]
    ) -> None:
        self.topic = topic
        self._bootstrap = bootstrap_servers
        self._options = dict(client_options)
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            max_request_size=2 * self.CHUNK + 65_536,
            **_split(client_options, KafkaProducer.DEFAULT_CONFIG),
        )
        self._ensure_topic()
        self._cache: dict[str, bytes] | None = None

    def _ensure_topic(self) -> None:
        admin = KafkaAdminClient(
            bootstrap_servers=self._bootstrap,
            **_split(self._options, KafkaAdminClient.DEFAULT_CONFIG),
        )
        try:
            admin.create_topics(
                [NewTopic(self.topic, 1, 1, topic_configs={"cleanup.policy": "compact"})]
            )
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def save(self, key: str, blob: bytes) -> None:
        generation = uuid.uuid4().hex
        chunks = [blob[i : i + self.CHUNK] for i in range(0, len(blob), self.CHUNK)] or [b""]
        for i, chunk in enumerate(chunks):
            self._producer.send(
                self.topic,
                key=f"{key}#{i}".encode(),
                value=generation.encode() + chunk,
                partition=0,
            )
        manifest = {
            "generation": generation,
            "chunks": len(chunks),
            "sha256": hashlib.sha256(blob).hexdigest(),
        }
        self._producer.send(
            self.topic, key=key.encode(), value=json.dumps(manifest).encode(), partition=0
        )
        self._producer.flush(timeout=60)
        if self._cache is not None:
            self._cache[key] = blob

    def refresh(self, timeout: float = 60.0) -> None:
        """Read the whole state topic (up to a fresh sentinel) into memory."""
        sentinel = f"__sentinel__{uuid.uuid4().hex}".encode()
        self._producer.send(self.topic, key=sentinel, value=b"", partition=0).get(timeout=30)
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * self.CHUNK,
            **{
                k: v
                for k, v in _split(self._options, KafkaConsumer.DEFAULT_CONFIG).items()
                if k not in ("group_id", "auto_offset_reset")
            },
        )
        latest: dict[bytes, bytes] = {}
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            deadline = time.monotonic() + timeout
            seen = False
            while not seen:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"state topic {self.topic}: sentinel not read within {timeout}s"
                    )
                for records in consumer.poll(500).values():
                    for r in records:
                        if r.key == sentinel:
                            seen = True
                        elif r.key is not None and not r.key.startswith(b"__sentinel__"):
                            latest[r.key] = r.value
        finally:
            consumer.close(autocommit=False)
        self._cache = self._assemble(latest)

    def _assemble(self, latest: dict[bytes, bytes]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for key, value in latest.items():
            name = key.decode()
            if "#" in name:
                continue
            manifest = json.loads(value)
            gen = manifest["generation"].encode()
            parts: list[bytes] | None = []
            for i in range(manifest["chunks"]):
                chunk = latest.get(f"{name}#{i}".encode())
                if chunk is None or not chunk.startswith(gen):
                    parts = None
                    break
                assert parts is not None
                parts.append(chunk[len(gen) :])
            if parts is None:
                log.warning(
                    "state topic %s: checkpoint %s is incomplete; ignoring it", self.topic, name
                )
                continue
            blob = b"".join(parts)
            if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
                log.warning(
                    "state topic %s: checkpoint %s fails its checksum; ignoring it",
                    self.topic,
                    name,
                )
                continue
            out[name] = blob
        return out

    def load(self, key: str) -> bytes | None:
        if self._cache is None:
            self.refresh()
        assert self._cache is not None
        return self._cache.get(key)

    def close(self) -> None:
        self._producer.close(timeout=10)
