"""The Kafka source and dead-letter sink: the only module that imports kafka-python.

Threading (kafka-python 3): the consumer belongs to the poll-loop thread. The
rebalance listener runs on the library's IO thread, so it only enqueues the
change; :meth:`KafkaSource.rebalances` hands the changes to the poll loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
from kafka.errors import (
    CommitFailedError,
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.partitioner.default import murmur2

from driftwatch import faults
from driftwatch.sources.base import Record, RecordBatch, drain

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


def consumer_defaults(max_record_bytes: int = 1_048_576) -> dict[str, Any]:
    """kafka-python consumer settings driftwatch uses unless ``kafka.client`` overrides them.

    Tuned for throughput (measured in ``python -m bench ingest``), each for a reason:

    * ``fetch_max_wait_ms: 25`` (library default 500): how long the broker may hold a fetch
      that has less than ``fetch_min_bytes``. A fetch that reaches the end of the log (a
      consumer keeping up with a live stream) waits that long before it returns, and
      kafka-python asks for the next batch only after handing out the previous one, so
      at 500 ms a consumer that is keeping up wakes twice a second (11k records/s was
      measured against Tansu this way, 96k at 10 ms). On a backlog every fetch is full
      and the wait never applies (``python -m bench ingest``: no difference). 25 ms keeps
      the latency low and caps an idle consumer at 40 fetches/s per broker.
    * ``fetch_min_bytes: 1``: answer as soon as there is anything (latency over batching).
    * ``max_partition_fetch_bytes: 8 MiB`` (default 1 MiB), and never less than two of the
      largest accepted records plus 64 KiB, so one oversized record (dead-lettered as
      ``too_large``) can never wedge a partition: fewer, larger fetches for a hot model,
      which lives on one partition.
    * ``fetch_max_bytes: 64 MiB`` (default 50 MiB): room for several such partitions.
    * ``receive_buffer_bytes: 4 MiB``: a socket buffer that holds a whole fetch.
    * ``auto_offset_reset: earliest``: a new group reads its topics from the start
      (a monitor that starts with no state wants the history the topic still has).
    * ``check_crcs``: kept on (the library default); install ``crc32c`` to make it cheap.
    """
    per_partition = max(8 * 1_048_576, 2 * max_record_bytes + 65_536)
    return {
        "fetch_max_wait_ms": 25,
        "fetch_min_bytes": 1,
        "max_partition_fetch_bytes": per_partition,
        "fetch_max_bytes": max(64 * 1_048_576, per_partition),
        "receive_buffer_bytes": 4 * 1_048_576,
        "auto_offset_reset": "earliest",
    }


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
        *,
        with_headers: bool = False,
    ) -> None:
        self.topics = topics
        self.with_headers = with_headers
        self._changes: queue.SimpleQueue[tuple[str, frozenset[TP]]] = queue.SimpleQueue()
        opts = {
            **consumer_defaults(max_record_bytes),
            **_split(client_options, KafkaConsumer.DEFAULT_CONFIG),
        }
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            max_poll_records=max_poll_records,
            **opts,
        )
        self._consumer.subscribe(topics, listener=_Listener(self._changes))
        self._last_records = -math.inf

    def broker_contact_age(self) -> float | None:
        """Seconds since the consumer last heard from the broker: a record fetched or a
        group-coordinator heartbeat answered (None before the first contact)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        heartbeat = getattr(coordinator, "heartbeat", None)
        last = max(float(getattr(heartbeat, "last_receive", -math.inf)), self._last_records)
        return None if math.isinf(last) else max(0.0, time.monotonic() - last)

    @property
    def session_timeout_seconds(self) -> float:
        return float(self._consumer.config.get("session_timeout_ms", 45_000)) / 1000.0

    def poll(self, timeout_seconds: float) -> list[RecordBatch]:
        """One batch per topic-partition with records, as columns (no object per record)."""
        fetched = self._consumer.poll(timeout_ms=int(timeout_seconds * 1000))
        if fetched:
            self._last_records = time.monotonic()
        out: list[RecordBatch] = []
        for tp, records in fetched.items():
            if records:
                out.append(
                    RecordBatch(
                        tp.topic,
                        tp.partition,
                        [r.offset for r in records],
                        [r.key for r in records],
                        [r.value for r in records],
                        [r.timestamp / 1000.0 for r in records],
                        [r.headers for r in records] if self.with_headers else None,
                    )
                )
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

    def commit(self, offsets: Mapping[TP, int], timeout_seconds: float = 2.0) -> bool:
        """Commit ``next offset`` per partition; False (logged) if a rebalance got in the way
        or the broker did not answer within ``timeout_seconds``. Bounded: kafka-python
        retries a commit for ``request_timeout_ms`` (30 s) by default, which would freeze
        the poll loop through a broker outage. A commit skipped is harmless: restores seek
        to the checkpoint's offsets, and the next checkpoint commits newer ones."""
        if not offsets:
            return True
        payload = {
            TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()
        }
        try:
            self._consumer.commit(offsets=payload, timeout_ms=int(timeout_seconds * 1000))
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


#: Why driftwatch's own producers (dead letters, state topic) default to
#: ``enable_idempotence: False``: in kafka-python 3.0.12 an idempotent producer whose
#: batch expires (``delivery_timeout_ms``) after having been sent resets its producer id
#: and never requests a new one, so every later send hangs unacknowledged — a broker
#: outage longer than the delivery timeout would stop checkpoints and commits for good.
#: Without idempotence a retry after a lost response can write a record twice, which
#: both uses tolerate (dead letters are at-least-once; state records are keyed).
#: ``kafka.client.enable_idempotence: true`` still overrides it.
_IDEMPOTENCE = False

#: Errors no resend can fix (the broker will never accept this record): dropped, counted lost.
_UNSENDABLE: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
    TypeError,
    ValueError,
)


def _close_producer(producer: KafkaProducer, timeout: float, what: str) -> None:
    """Close a producer within ``timeout`` seconds, never raising. kafka-python's ``close``
    raises (and leaves its sender thread running, and ``__del__`` raising again later) when
    records are still unacknowledged, so that case falls back to a forced close."""
    try:
        producer.close(timeout=timeout)
        return
    except Exception as exc:
        log.warning("closing the %s producer: %s; closing it forcibly", what, exc)
    sender = getattr(producer, "_sender", None)  # kafka-python 3 internals, used defensively
    try:
        if sender is not None:
            sender.force_close()  # fails the unacknowledged records' futures
            sender.join(2.0)
        producer.close(timeout=0)
    except Exception as exc:
        log.warning("closing the %s producer forcibly: %s", what, exc)


@dataclass(slots=True)
class _Letter:
    """A dead letter as produced (kept until acknowledged, to resend it)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    where: str  # topic/partition/offset of the invalid record

    @property
    def size(self) -> int:
        return (
            len(self.key or b"")
            + len(self.value or b"")
            + sum(len(k) + len(v) for k, v in self.headers)
        )


class KafkaDeadLetters:
    """Copies invalid records, unchanged, to the dead-letter topic with the reason in headers.

    Never stalls or kills the poll loop: :meth:`send` returns within ``max_block_ms``
    (default here 500 ms: kafka-python blocks ``send`` only while it has no metadata for
    the topic) and never raises; a letter that could not be handed to the producer, or
    whose produce failed, is kept and resent by the next :meth:`flush`. While letters are
    waiting for a resend, :meth:`send` does not touch the producer at all (one blocked
    ``send`` per outage, not one per record). At most ``max_retained`` letters and
    ``max_retained_bytes`` are held unacknowledged (in flight plus waiting); beyond that
    the oldest waiting one is dropped and counted in :attr:`lost` (logged once per burst),
    as is a letter the broker can never accept (larger than its message size limit).

    Delivery is at-least-once (``acks=all``, not idempotent: see ``_IDEMPOTENCE``). A
    letter is written twice only if the broker stored it but its answer was lost: it
    stalled past ``request_timeout_ms`` (kafka-python resends the request) or past
    ``delivery_timeout_ms`` (this class resends the letter), or the connection dropped
    after the write. With a healthy broker, or a stall shorter than
    ``request_timeout_ms``, each letter is written once. Across a crash or rebalance, the
    records re-applied after the last checkpoint are dead-lettered again (the daemon
    commits offsets only after :meth:`flush` returned True, never past a lost letter
    except those counted in :attr:`lost`).

    Startup needs the broker: the producer's constructor bootstraps (up to
    ``bootstrap_timeout_ms``, default 30 s) and raises KafkaTimeoutError ("Unable to
    bootstrap") without one, so the daemon exits rather than run without its DLQ.

    Not thread-safe: ``send`` and ``flush`` are called from one thread (the poll loop).
    """

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        client_options: Mapping[str, Any],
        max_record_bytes: int = 1_048_576,
        max_retained: int = 10_000,
        max_retained_bytes: int = 64 * 1_048_576,
    ) -> None:
        self.topic = topic
        self.max_retained = max_retained
        self.max_retained_bytes = max_retained_bytes
        opts = _split(client_options, KafkaProducer.DEFAULT_CONFIG)
        opts.setdefault("max_request_size", max(1_048_576, 4 * max_record_bytes))
        opts.setdefault("acks", "all")
        opts.setdefault("max_block_ms", 500)
        opts.setdefault("enable_idempotence", _IDEMPOTENCE)
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **opts)
        #: letters acknowledged by the broker
        self.sent = 0
        #: failures observed: a send that could not be enqueued, a produce that failed
        #: (each retry counts again)
        self.failed = 0
        #: letters dropped for good (beyond the retention bound, or unsendable)
        self.lost = 0
        self._in_flight: deque[tuple[_Letter, Any]] = deque()  # handed to the producer
        self._waiting: deque[_Letter] = deque()  # to resend at the next flush
        self._bytes = 0  # of the letters in flight or waiting
        self._quiet_failures = False  # a failure was logged in this burst
        self._quiet_losses = False  # a loss was logged in this burst

    def send(self, record: Record, reason: str, detail: str) -> None:
        where = f"{record.topic}/{record.partition}/{record.offset}"
        try:
            letter = _Letter(
                record.key,
                # Kafka refuses a record with neither key nor value: send an empty value
                record.value if record.value is not None or record.key is not None else b"",
                [
                    ("driftwatch-reason", reason.encode()),
                    ("driftwatch-detail", detail[:500].encode("utf-8", "replace")),
                    ("driftwatch-source", where.encode()),
                ],
                where,
            )
            self._reap()
            if self._waiting or len(self._in_flight) >= self.max_retained:
                self._keep(letter)  # degraded: the next flush resends, in order
            else:
                self._enqueue(letter)
        except Exception:  # never into the poll loop
            log.exception("dead letter of %s", where)

    def flush(self, timeout: float) -> bool:
        """Resend kept letters, wait at most ``timeout`` seconds (plus at most one
        ``max_block_ms`` for a resend) for every letter in flight; True iff every letter
        handed to :meth:`send` (except those counted in :attr:`lost`) is acknowledged."""
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            for _ in range(2):  # a second round resends what failed while awaited
                resent = self._resend(deadline)
                self._await(deadline)
                if not (resent and self._waiting) or time.monotonic() >= deadline:
                    break
            done = not self._waiting and not self._in_flight
        except Exception:
            log.exception("flushing dead letters")
            return False
        if done:
            self._quiet_failures = self._quiet_losses = False
        return done

    def close(self, timeout: float = 10.0) -> None:
        """Flush for up to half of ``timeout``, then close the producer; never raises."""
        deadline = time.monotonic() + timeout
        if not self.flush(timeout / 2):
            log.warning(
                "closing with %d dead letter(s) unacknowledged (their records are re-read, "
                "and dead-lettered again, after the last committed offsets)",
                len(self._waiting) + len(self._in_flight),
            )
        _close_producer(self._producer, max(0.0, deadline - time.monotonic()), "dead-letter")

    # -- internals (poll-loop thread) ---------------------------------------------------------
    def _enqueue(self, letter: _Letter, front: bool = False) -> bool:
        try:
            future = self._producer.send(
                self.topic, key=letter.key, value=letter.value, headers=letter.headers
            )
        except Exception as exc:
            self._failure(letter, exc, front)
            return False
        self._in_flight.append((letter, future))
        self._bytes += letter.size
        return True

    def _failure(self, letter: _Letter, exc: BaseException, front: bool = False) -> None:
        self.failed += 1
        if isinstance(exc, _UNSENDABLE):
            self._lose(letter, f"the broker cannot accept it: {exc!r}")
            return
        if not self._quiet_failures:
            self._quiet_failures = True
            log.warning(
                "dead letter of %s to %s not acknowledged (%r: is the broker reachable, "
                "does the topic exist?); kept and resent at the next flush (further "
                "failures are counted, not logged, until a flush succeeds)",
                letter.where,
                self.topic,
                exc,
            )
        self._keep(letter, front)

    def _keep(self, letter: _Letter, front: bool = False) -> None:
        if front:
            self._waiting.appendleft(letter)
        else:
            self._waiting.append(letter)
        self._bytes += letter.size
        while self._waiting and (
            len(self._waiting) + len(self._in_flight) > self.max_retained
            or self._bytes > self.max_retained_bytes
        ):
            oldest = self._waiting.popleft()
            self._bytes -= oldest.size
            self._lose(oldest, "too many dead letters unacknowledged")

    def _lose(self, letter: _Letter, why: str) -> None:
        self.lost += 1
        if not self._quiet_losses:
            self._quiet_losses = True
            log.error(
                "dead letter of %s dropped: %s (further drops are counted as lost, not "
                "logged, until a flush succeeds)",
                letter.where,
                why,
            )

    def _settle(self, letter: _Letter, future: Any) -> None:
        self._bytes -= letter.size
        if future.succeeded():
            self.sent += 1
        else:
            self._failure(letter, future.exception)

    def _reap(self) -> None:
        """Settle the oldest letters already acknowledged (cheap: stops at the first
        pending one), so a healthy producer holds only what is really in flight."""
        while self._in_flight and self._in_flight[0][1].is_done:
            self._settle(*self._in_flight.popleft())

    def _resend(self, deadline: float) -> bool:
        """Hand the waiting letters to the producer again; False if one still fails (the
        rest keep waiting: one blocked send per flush at most)."""
        while self._waiting and time.monotonic() < deadline:
            letter = self._waiting.popleft()
            self._bytes -= letter.size
            if not self._enqueue(letter, front=True):
                return False
        return not self._waiting

    def _await(self, deadline: float) -> None:
        pending: deque[tuple[_Letter, Any]] = deque()
        while self._in_flight:
            letter, future = self._in_flight.popleft()
            remaining = deadline - time.monotonic()
            if not future.is_done and remaining > 0:
                with contextlib.suppress(Exception):  # a timeout, or the failure settled below
                    future.get(timeout=remaining)
            if future.is_done:
                self._settle(letter, future)
            else:
                pending.append((letter, future))
        self._in_flight = pending


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


@dataclass(frozen=True, slots=True)
class StateGeneration:
    """One written checkpoint of a key: its generation id and the chunk keys it uses."""

    generation: str
    chunk_keys: tuple[bytes, ...]


_SENTINEL = b"__sentinel__"


def chunk_key(key: str, generation: str, index: int) -> bytes:
    """Where chunk ``index`` of ``key``'s checkpoint generation lives on the state topic."""
    return f"{key}@{generation}#{index}".encode()


def apply_state_record(latest: dict[bytes, bytes], key: bytes | None, value: bytes | None) -> None:
    """Apply one state-topic record, in log order, to the latest value of each key: a
    tombstone (value None) deletes the key; sentinels are skipped."""
    if key is None or key.startswith(_SENTINEL):
        return
    if value is None:
        latest.pop(key, None)
    else:
        latest[key] = value


def assemble_state(
    latest: Mapping[bytes, bytes], topic: str = "state"
) -> tuple[dict[str, bytes], dict[str, StateGeneration]]:
    """The checkpoints on a state topic, from the latest value of each key (tombstoned
    keys already removed): ``(blobs, generations)``. ``blobs`` holds each manifest's
    checkpoint whose chunks are all present and match its SHA-256; ``generations`` the
    generation every manifest names (valid or not), so the next save can tombstone its
    chunks. Chunks no manifest names (a crash or failure mid-save, a superseded
    generation not yet compacted) are ignored.

    Layout 2 (current): chunks ``{key}@{generation}#{i}`` holding the bytes; the manifest
    ``{key}`` = ``{"layout": 2, "generation", "chunks", "sha256"}``. Layout 1 (read for
    compatibility): chunks ``{key}#{i}`` holding the generation's ASCII id then the bytes.
    """
    blobs: dict[str, bytes] = {}
    generations: dict[str, StateGeneration] = {}
    for raw, value in latest.items():
        if b"#" in raw or raw.startswith(_SENTINEL):
            continue
        name = raw.decode("utf-8", "replace")
        try:
            manifest = json.loads(value)
            gen = str(manifest["generation"])
            count = int(manifest["chunks"])
            sha = str(manifest["sha256"])
            legacy = manifest.get("layout", 1) == 1
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("state topic %s: %s is not a checkpoint manifest; ignoring it", topic, name)
            continue
        if legacy:
            keys = tuple(f"{name}#{i}".encode() for i in range(count))
            prefix = gen.encode()
        else:
            keys = tuple(chunk_key(name, gen, i) for i in range(count))
            prefix = b""
        generations[name] = StateGeneration(gen, keys)
        parts = [latest.get(k) for k in keys]
        if any(p is None or not p.startswith(prefix) for p in parts):
            log.warning("state topic %s: checkpoint %s is incomplete; ignoring it", topic, name)
            continue
        blob = b"".join(p[len(prefix) :] for p in parts if p is not None)
        if hashlib.sha256(blob).hexdigest() != sha:
            log.warning(
                "state topic %s: checkpoint %s fails its checksum; ignoring it", topic, name
            )
            continue
        blobs[name] = blob
    return blobs, generations


class KafkaStateStore:
    """Checkpoints in a compacted Kafka topic (``state.backend: kafka``), so whichever replica
    is assigned a partition can restore it.

    A save never overwrites what the current checkpoint is made of, so a crash (or a failed
    produce) at any point of it leaves the previous checkpoint restorable:

    1. the new generation's chunks (at most ``chunk_bytes`` each) go under new keys,
       ``{key}@{generation}#{i}``, and every one is acknowledged;
    2. only then is the manifest ``{key}`` (generation, chunk count, SHA-256) written and
       acknowledged — the switch to the new checkpoint;
    3. only then are the previous generation's chunks tombstoned (compaction drops them).

    Any failure in 1-2 raises, so the caller commits no offsets. Reading never trusts the
    broker's end offsets: the reader writes a unique sentinel record and reads the
    (single-partition) topic until it sees it, so it has read everything written before.
    :meth:`refresh` also learns each key's current generation, so the save after a restart
    tombstones the chunks of the checkpoint it replaces.

    Leftovers (harmless, ignored by readers): the chunks of a save that crashed before its
    manifest, or whose manifest was written but not acknowledged; the previous
    generation's chunks when the process dies between 2 and 3. Chunks of saves this
    process saw fail are tombstoned after its next successful save.

    ``chunk_bytes`` (default 512 KiB, or the ``DRIFTWATCH_STATE_CHUNK_BYTES`` environment
    variable) must stay below the broker's and topic's maximum message size.
    """

    CHUNK = 512 * 1024

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        client_options: Mapping[str, Any],
        chunk_bytes: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.topic = topic
        env = os.environ.get("DRIFTWATCH_STATE_CHUNK_BYTES")
        self.chunk_bytes = max(1, chunk_bytes or (int(env) if env else self.CHUNK))
        #: bound on waiting for the acknowledgements of one save (chunks, then manifest)
        self.timeout = timeout
        self._bootstrap = bootstrap_servers
        self._options = dict(client_options)
        opts = _split(client_options, KafkaProducer.DEFAULT_CONFIG)
        opts["acks"] = "all"  # durable means acknowledged by every in-sync replica
        opts["max_request_size"] = max(
            int(opts.get("max_request_size", 0)), 1_048_576, 2 * self.chunk_bytes + 65_536
        )
        opts.setdefault("enable_idempotence", _IDEMPOTENCE)
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **opts)
        self._ensure_topic()
        self._lock = threading.Lock()  # save (checkpoint thread) vs refresh (poll thread)
        self._loaded = False
        self._cache: dict[str, bytes] = {}
        self._current: dict[str, StateGeneration] = {}
        self._garbage: list[bytes] = []  # chunk keys to tombstone after the next manifest
        self._saves = 0
        self._saved_at: dict[str, int] = {}  # key -> ``_saves`` when this process saved it

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

    def _produce(self, key: bytes, value: bytes | None) -> Any:
        return self._producer.send(self.topic, key=key, value=value, partition=0)

    @staticmethod
    def _acked(future: Any, deadline: float, what: str) -> None:
        try:
            future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaTimeoutError:
            raise KafkaTimeoutError(f"{what}: not acknowledged in time") from None

    def save(self, key: str, blob: bytes) -> None:
        """Write ``blob`` as ``key``'s checkpoint; returns once it is durable (raises if
        it may not be, leaving the previous checkpoint in place)."""
        generation = uuid.uuid4().hex
        size = self.chunk_bytes
        chunks = [blob[i : i + size] for i in range(0, len(blob), size)] or [b""]
        keys = tuple(chunk_key(key, generation, i) for i in range(len(chunks)))
        deadline = time.monotonic() + self.timeout
        try:
            futures = [self._produce(k, c) for k, c in zip(keys, chunks, strict=True)]
            for n, future in enumerate(futures, 1):
                self._acked(future, deadline, f"{key}: chunk {n} of {len(keys)}")
                faults.point("state_store.after_chunk", n)
        except BaseException:
            with self._lock:  # no manifest names them: tombstone after the next save
                self._garbage.extend(keys)
            raise
        faults.point("state_store.before_manifest")
        manifest = {
            "layout": 2,
            "generation": generation,
            "chunks": len(chunks),
            "sha256": hashlib.sha256(blob).hexdigest(),
        }
        self._acked(
            self._produce(key.encode(), json.dumps(manifest).encode()),
            time.monotonic() + self.timeout,
            f"{key}: manifest",
        )
        faults.point("state_store.after_manifest")
        with self._lock:
            previous = self._current.get(key)
            self._current[key] = StateGeneration(generation, keys)
            self._cache[key] = blob
            self._saves += 1
            self._saved_at[key] = self._saves
            doomed, self._garbage = [*(previous.chunk_keys if previous else ()), *self._garbage], []
        self._tombstone(doomed)
        faults.point("state_store.after_tombstones")

    def _tombstone(self, keys: list[bytes]) -> None:
        """Delete superseded chunks (best effort: a failure only leaves them for later)."""
        if not keys:
            return
        try:
            futures = [self._produce(k, None) for k in keys]
            deadline = time.monotonic() + min(self.timeout, 10.0)
            for future in futures:
                self._acked(future, deadline, "tombstone")
        except Exception as exc:
            log.warning(
                "state topic %s: tombstoning old chunks: %s (retried later)", self.topic, exc
            )
            with self._lock:
                self._garbage.extend(keys)

    def refresh(self, timeout: float = 60.0) -> None:
        """Read the whole state topic (up to a fresh sentinel) into memory."""
        with self._lock:
            started = self._saves
        self._adopt(self.read_topic(timeout), started)

    def read_topic(self, timeout: float = 60.0) -> dict[bytes, bytes]:
        """The latest value of every key on the state topic, up to a sentinel written now
        (tombstoned keys and sentinels left out): the input of :func:`assemble_state`."""
        sentinel = _SENTINEL + uuid.uuid4().hex.encode()
        self._produce(sentinel, b"").get(timeout=30)
        opts = {
            k: v
            for k, v in _split(self._options, KafkaConsumer.DEFAULT_CONFIG).items()
            if k not in ("group_id", "auto_offset_reset")
        }
        opts["max_partition_fetch_bytes"] = max(
            int(opts.get("max_partition_fetch_bytes", 0)), 1_048_576, 4 * self.chunk_bytes
        )
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, **opts
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
                        seen = seen or r.key == sentinel
                        apply_state_record(latest, r.key, r.value)
        finally:
            consumer.close(autocommit=False)
        with contextlib.suppress(Exception):  # compaction then drops the sentinel
            self._produce(sentinel, None)
        return latest

    def _adopt(self, latest: Mapping[bytes, bytes], started: int) -> None:
        """Take what was read as the current checkpoints, except keys this process saved
        after the read began (``started``: the save count then), which are newer."""
        blobs, generations = assemble_state(latest, self.topic)
        with self._lock:
            for key, at in self._saved_at.items():
                if at > started:  # saved by this process while reading: newer than read
                    blobs[key] = self._cache[key]
                    generations[key] = self._current[key]
            self._cache, self._current, self._loaded = blobs, generations, True

    def load(self, key: str) -> bytes | None:
        if not self._loaded:
            self.refresh()
        with self._lock:
            return self._cache.get(key)

    def close(self) -> None:
        _close_producer(self._producer, 10.0, "state-topic")
