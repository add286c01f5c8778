"""The boundary between transports and the pipeline."""

from __future__ import annotations

import queue
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


def drain(q: queue.SimpleQueue[T]) -> list[T]:
    """Everything a queue holds now, oldest first, without waiting."""
    out: list[T] = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


@dataclass(frozen=True, slots=True)
class Record:
    """A raw record as a transport delivers it; decoding happens in ``events``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # seconds; the transport's record time
    #: the record's headers (name, value), when the source was asked to keep them
    headers: Sequence[tuple[str, bytes | None]] | None = None


#: One record's headers as the Kafka clients return them.
Headers = Sequence[tuple[str, bytes | None]] | None


class DeadLetters(Protocol):
    """Where the pipeline copies invalid records (all it needs: ``send``).

    ``send`` must never raise and never block the poll loop for long."""

    def send(self, record: Record, reason: str, detail: str) -> None: ...


class DurableDeadLetters(DeadLetters, Protocol):
    """A dead-letter sink the daemon can make durable before it commits offsets.

    ``flush(timeout)`` waits at most about ``timeout`` seconds and never raises; True iff
    every dead letter handed to ``send`` so far (except those dropped and counted in
    ``lost``) has been acknowledged. ``sent``/``failed``/``lost`` count acknowledged
    letters, failures observed (each retry counts) and letters dropped for good.
    ``close`` never raises and returns within about ten seconds."""

    sent: int
    failed: int
    lost: int

    def flush(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


class RecordBatch:
    """Records of one topic-partition, in offset order, held as columns.

    The hot path reads ``values`` and ``timestamps`` as lists and never builds a
    :class:`Record` per message (that alone cost about 1 µs each); :meth:`record` builds
    one on demand, for a dead letter."""

    __slots__ = ("headers", "keys", "offsets", "partition", "timestamps", "topic", "values")

    def __init__(
        self,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        keys: Sequence[bytes | None],
        values: Sequence[bytes | None],
        timestamps: Sequence[float],
        headers: Sequence[Headers] | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offsets = offsets
        self.keys = keys
        self.values = values
        self.timestamps = timestamps  # seconds
        #: per record, its headers; None: the source does not keep headers
        self.headers = headers

    def __len__(self) -> int:
        return len(self.offsets)

    def __repr__(self) -> str:
        return f"RecordBatch({self.topic}/{self.partition}, {len(self)} records)"

    @property
    def next_offset(self) -> int:
        """The offset after the last record (the position once it is applied)."""
        return self.offsets[-1] + 1

    def chunks(self, size: int) -> list[RecordBatch]:
        """This batch cut into consecutive batches of at most ``size`` records."""
        if len(self) <= size:
            return [self]
        return [
            RecordBatch(
                self.topic,
                self.partition,
                self.offsets[i : i + size],
                self.keys[i : i + size],
                self.values[i : i + size],
                self.timestamps[i : i + size],
                None if self.headers is None else self.headers[i : i + size],
            )
            for i in range(0, len(self), size)
        ]

    def record(self, i: int) -> Record:
        return Record(
            self.topic,
            self.partition,
            self.offsets[i],
            self.keys[i],
            self.values[i],
            self.timestamps[i],
            None if self.headers is None else self.headers[i],
        )

    def records(self) -> list[Record]:
        return [self.record(i) for i in range(len(self))]


def batches_of(records: Sequence[Record]) -> list[RecordBatch]:
    """Records grouped into one batch per run of the same topic-partition, order kept."""
    runs: list[list[Record]] = []
    for r in records:
        if not runs or (r.topic, r.partition) != (runs[-1][0].topic, runs[-1][0].partition):
            runs.append([])
        runs[-1].append(r)
    return [
        RecordBatch(
            run[0].topic,
            run[0].partition,
            [r.offset for r in run],
            [r.key for r in run],
            [r.value for r in run],
            [r.timestamp for r in run],
            [r.headers for r in run] if any(r.headers is not None for r in run) else None,
        )
        for run in runs
    ]


class Consumer(Protocol):
    """What the daemon needs of a Kafka consumer, whichever library it wraps
    (:class:`~driftwatch.sources.kafka.KafkaSource` or
    :class:`~driftwatch.sources.confluent.ConfluentSource`)."""

    def poll(self, timeout_seconds: float) -> list[RecordBatch]: ...

    def rebalances(self) -> list[tuple[str, frozenset[tuple[str, int]]]]: ...

    def partitions(self, topic: str) -> int | None: ...

    def seek(self, topic: str, partition: int, offset: int) -> None: ...

    def position(self, topic: str, partition: int) -> int: ...

    def commit(
        self, offsets: Mapping[tuple[str, int], int], timeout_seconds: float = 2.0
    ) -> bool: ...

    def broker_contact_age(self) -> float | None: ...

    @property
    def session_timeout_seconds(self) -> float: ...

    def close(self) -> None: ...
