"""The Kafka source and dead-letter sink: the only module that imports kafka-python.

Threading (kafka-python 3): the consumer belongs to the poll-loop thread. The
rebalance listener runs on the library's IO thread, so it only enqueues the
change; :meth:`KafkaSource.rebalances` hands the changes to the poll loop.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.errors import CommitFailedError, KafkaError

from driftwatch.sources.base import Record

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

    def rebalances(self) -> list[tuple[str, frozenset[TP]]]:
        """Assignment changes since the last call, oldest first."""
        out = []
        while True:
            try:
                out.append(self._changes.get_nowait())
            except queue.Empty:
                return out

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
