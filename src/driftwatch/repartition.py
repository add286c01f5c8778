"""Re-keying records by model: the first stage for topics not keyed by model name.

Model servers' payload logs (KServe's logger through Knative's KafkaSink) and other
producers do not key records by model, so one model's events are spread over every
partition, and a replica owning some partitions would see part of each model. Windows
are sums of counts, so part-windows could be added up, but only within one process; with
several replicas a model's parts would live in several processes. So the daemon does
what Kafka Streams and Quix Streams do (a repartition topic): this stage reads
``kafka.prediction_topic`` in a consumer group of its own (``<group_id>.repartition``)
and copies every record, unchanged (value and headers), to ``kafka.monitored_topic``
keyed by its model, where the monitoring stage reads it exactly as it reads a keyed
topic: a model's events on one partition, with its labels (same partition count, same
partitioner), checkpointed and restored with its partition.

Nothing is decoded here beyond finding the model: a record whose model cannot be told (or
is not configured) is copied too, unkeyed, to partition 0, where the monitoring stage
counts and dead-letters it like any invalid record. So nothing is dropped here, and one
path judges records.

At least once, made exact downstream: input offsets are committed only after every
record copied from them was acknowledged by the broker (``acks=all``, one request in
flight per connection, so each output partition keeps input order). After a crash, a
broker outage or a rebalance, the records since the last commit are copied again; each
copy carries header ``dw-src`` = ``<input partition>:<input offset>``, and the monitoring
stage keeps, per model and input partition, the highest input offset applied (in the
model's checkpoint): a record at or below it is a copy already counted and is skipped.
That holds whichever replica copies: each copier writes an input partition's records in
offset order, starting at a committed offset no later than anything already copied.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from driftwatch.config import KafkaConfig
from driftwatch.events.cloudevents import model_of
from driftwatch.events.payloads import SOURCE_HEADER, TOO_LARGE_HEADER
from driftwatch.faults import point as fault_point
from driftwatch.sources.base import Headers
from driftwatch.sources.clients import producer_options
from driftwatch.sources.kafka import _split, consumer_defaults

log = logging.getLogger(__name__)

#: Backoff between attempts while the broker refuses the copies.
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)


class ModelRouter:
    """Which configured model a raw record belongs to (None: none can be told)."""

    def __init__(self, kafka: KafkaConfig, services: Mapping[str, str]) -> None:
        #: inference service (cloudevents) or model name (driftwatch) -> model name
        self.services = dict(services)
        self.cloudevents = kafka.format == "cloudevents"

    def __call__(self, headers: Headers, value: bytes | None) -> str | None:
        try:
            if self.cloudevents:
                name = model_of(headers, value)
            else:
                obj = orjson.loads(value) if value else None
                name = obj.get("model") if isinstance(obj, dict) else None
        except Exception:  # anything unreadable is judged (and counted) downstream
            return None
        return self.services.get(name) if isinstance(name, str) else None


def ensure_topic(kafka: KafkaConfig, partitions: int) -> int:
    """Create the re-keyed topic if missing, with ``partitions`` partitions; return the
    number it has (an existing topic keeps its own; the monitoring stage checks that it
    matches the label topic's)."""
    admin = KafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers,
        **_split(producer_options(kafka), KafkaAdminClient.DEFAULT_CONFIG),
    )
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            # replication factor -1: the broker's default.replication.factor (KIP-464), as
            # for any topic an operator creates without saying: never a lone copy by us
            admin.create_topics([NewTopic(kafka.monitored_topic, partitions, -1)])
        for _ in range(100):
            meta = admin.describe_topics([kafka.monitored_topic])
            parts = meta[0].get("partitions") if meta else None
            if parts:
                return len(parts)
            time.sleep(0.1)
        return partitions
    finally:
        admin.close()


def partition_count(kafka: KafkaConfig, stop: threading.Event | None = None) -> int:
    """How many partitions the re-keyed topic should have: the label topic's (so labels
    are co-partitioned), else ``repartition_partitions``, else the input topic's. Waits
    (logging every 30 s) until one of those topics exists, or ``stop`` is set (then 1)."""
    if kafka.repartition_partitions is not None:
        return kafka.repartition_partitions
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        **_split(producer_options(kafka), KafkaConsumer.DEFAULT_CONFIG),
    )
    try:
        waited = 0.0
        while stop is None or not stop.is_set():
            for topic in (kafka.label_topic, kafka.prediction_topic):
                parts = None if topic is None else consumer.partitions_for_topic(topic)
                if parts:
                    return len(parts)
            if waited and waited % 30 < 0.5:
                log.warning(
                    "waiting for topic %s or %s to exist before creating %s",
                    kafka.label_topic,
                    kafka.prediction_topic,
                    kafka.monitored_topic,
                )
            time.sleep(0.5)
            waited += 0.5
        return 1
    finally:
        consumer.close()


class Repartitioner:
    """The re-keying stage: its own consumer group and producer, on its own thread."""

    def __init__(
        self,
        kafka: KafkaConfig,
        router: Callable[[Headers, bytes | None], str | None],
    ) -> None:
        self.kafka = kafka
        self.router = router
        self.topic = kafka.monitored_topic
        self.copied = 0  # records acknowledged on the re-keyed topic
        self.unrouted = 0  # of which, copied unkeyed (no configured model could be told)
        self.retries = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_for_good = False
        # kafka-python whatever ``kafka.library`` is (with confluent, its connection options
        # translated, as for the other producers): this stage moves bytes, it decodes nothing
        opts = {
            **consumer_defaults(kafka.max_event_bytes),
            **_split(producer_options(kafka), KafkaConsumer.DEFAULT_CONFIG),
        }
        self._consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=f"{kafka.group_id}.repartition",
            enable_auto_commit=False,
            max_poll_records=2000,
            **opts,
        )
        self._producer = self._new_producer()
        self._consumer.subscribe([kafka.prediction_topic])

    def _new_producer(self) -> KafkaProducer:
        kafka = self.kafka
        popts = _split(producer_options(kafka), KafkaProducer.DEFAULT_CONFIG)
        popts["acks"] = "all"
        popts["max_in_flight_requests_per_connection"] = 1  # keep each partition's order
        # a batch must never expire while a later one to the same partition succeeds: that
        # gap would pass the downstream offset check (copies of it would be skipped)
        popts["delivery_timeout_ms"] = 2**31 - 1
        popts.setdefault("linger_ms", 5)
        popts.setdefault("max_block_ms", 5000)
        popts["max_request_size"] = max(
            int(popts.get("max_request_size", 0)), 1_048_576, 2 * kafka.max_event_bytes + 65_536
        )
        return KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, **popts)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="driftwatch-repartition")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # stuck on a dead broker: the process exits anyway
                log.warning("repartition: the copier did not stop in %.0f s", timeout)
                return
        with contextlib.suppress(Exception):
            self._consumer.close(autocommit=False)
        with contextlib.suppress(Exception):
            self._producer.close(timeout=5)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                fetched = self._consumer.poll(timeout_ms=500)
            except Exception as exc:
                log.warning("repartition: poll failed: %s", exc)
                self._stop.wait(1.0)
                continue
            if not fetched:
                continue
            if self.copy(fetched):
                failures = 0
                continue
            # not all acknowledged: once the producer has nothing left in flight (its
            # batches never expire, so what it holds lands in order), copy again from the
            # first record of this poll; the monitoring stage skips the copies it applied
            self.retries += 1
            self._drain()
            for tp, records in fetched.items():
                if records:
                    with contextlib.suppress(Exception):
                        self._consumer.seek(tp, records[0].offset)
            self._stop.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
            failures += 1

    def _drain(self) -> None:
        """Wait until the producer holds nothing (or stop is asked); a producer that failed
        a batch for good is replaced, so nothing sent after the retry can overtake it."""
        while not self._stop.is_set():
            try:
                self._producer.flush(timeout=5)
                break
            except Exception:
                continue
        if self._failed_for_good:
            self._failed_for_good = False
            with contextlib.suppress(Exception):
                self._producer.close(timeout=0)
            self._producer = self._new_producer()

    def _send(self, model: str | None, value: bytes | None, headers: list[Any]) -> Any:
        if model is None:
            return self._producer.send(self.topic, value=value, headers=headers, partition=0)
        return self._producer.send(self.topic, key=model.encode(), value=value, headers=headers)

    def copy(self, fetched: Mapping[TopicPartition, Sequence[Any]]) -> bool:
        """Copy one poll's records; commit their offsets once all are acknowledged.

        A record larger than ``kafka.max_event_bytes`` (value and headers), or one the
        producer refuses as too large, is copied as a stub: header ``dw-too-large`` (its
        size) and the first KiB of its value, which the monitoring stage counts and
        dead-letters as ``too_large``; so no record can wedge the copying."""
        futures = []
        limit = self.kafka.max_event_bytes
        unrouted = 0
        try:
            for tp, records in fetched.items():
                for r in records:
                    src = (SOURCE_HEADER, f"{tp.partition}:{r.offset}".encode())
                    headers = [
                        (str(k), bytes(v or b""))
                        for k, v in (r.headers or ())
                        if k not in (SOURCE_HEADER, TOO_LARGE_HEADER)
                    ]
                    value = r.value
                    size = len(value or b"") + sum(len(k) + len(v) for k, v in headers)
                    model = None if size > limit else self.router(headers, value)
                    unrouted += model is None
                    if size > limit:
                        futures.append(self._send(None, *_stub(value, size, src)))
                        continue
                    try:
                        futures.append(self._send(model, value, [*headers, src]))
                    except MessageSizeTooLargeError:
                        futures.append(self._send(None, *_stub(value, size, src)))
            self._producer.flush(timeout=30)
            for fut in futures:
                fut.get(timeout=0)
        except Exception as exc:
            self._failed_for_good = isinstance(exc, KafkaError) and not getattr(
                exc, "retriable", False
            )
            log.warning(
                "repartition: copying %d record(s) to %s failed (will copy them again): %s",
                sum(len(r) for r in fetched.values()),
                self.topic,
                exc,
            )
            return False
        fault_point("repartition.before_commit")
        self.copied += len(futures)
        self.unrouted += unrouted
        offsets = {
            tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)
            for tp, records in fetched.items()
            if records
        }
        try:
            self._consumer.commit(offsets=offsets, timeout_ms=5000)
        except Exception as exc:  # harmless: the next commit covers it; copies are skipped
            log.warning("repartition: offset commit failed: %s", exc)
        return True


def _stub(value: bytes | None, size: int, src: tuple[str, bytes]) -> tuple[bytes, list[Any]]:
    return (value or b"")[:1024], [(TOO_LARGE_HEADER, str(size).encode()), src]
