"""ConfluentSource (``kafka.library: confluent``) against a real Tansu broker: every record
with its exact offset, value and timestamp; seeks right after an assignment (also while
librdkafka still refuses them); commits and resuming; rebalances between two consumers;
positions; a missing topic; a broker that stops answering."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("confluent_kafka")

from confluent_kafka import Producer

import driftwatch.sources.confluent as confluent_mod
from driftwatch.demo.broker import Broker
from driftwatch.sources.base import RecordBatch
from driftwatch.sources.confluent import ConfluentSource
from tests.integration.conftest import freeze, thaw
from tests.integration.test_daemon import create_topic

pytestmark = pytest.mark.integration

#: quick group joins and departures
FAST = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
PER_PARTITION = 60
T0_MS = 1_700_000_000_000


def produce_two_partitions(broker: Broker, topic: str, n: int = PER_PARTITION) -> None:
    """``n`` records per partition of a 2-partition topic, with known values, keys and
    timestamps: record i of partition p has value ``p-i``, timestamp T0_MS + 1000 p + i."""
    create_topic(broker, topic, 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(n):
        for p in (0, 1):
            producer.produce(
                topic,
                value=f"{p}-{i}".encode(),
                key=None if i % 7 == 0 else f"k{i}".encode(),
                partition=p,
                timestamp=T0_MS + 1000 * p + i,
            )
    assert producer.flush(10) == 0


def expected_value(p: int, i: int) -> bytes:
    return f"{p}-{i}".encode()


def source(broker: Broker, topic: str, group: str | None = None, **kw: Any) -> ConfluentSource:
    return ConfluentSource(
        [broker.bootstrap], group or f"g-{uuid.uuid4().hex[:8]}", [topic], dict(FAST), **kw
    )


class Collected:
    """Everything a source returned, per partition, plus its rebalance history."""

    def __init__(self) -> None:
        self.records: dict[int, list[tuple[int, bytes | None, bytes | None, float]]] = {
            0: [],
            1: [],
        }
        self.changes: list[tuple[str, frozenset[tuple[str, int]]]] = []

    def add(self, batches: list[RecordBatch]) -> None:
        for b in batches:
            assert len(b) > 0
            # one run of one partition, in offset order, without gaps
            assert b.offsets == list(range(b.offsets[0], b.offsets[0] + len(b)))
            assert len(b.keys) == len(b.values) == len(b.timestamps) == len(b)
            self.records[b.partition].extend(
                zip(b.offsets, b.keys, b.values, b.timestamps, strict=True)
            )

    def offsets(self, p: int) -> list[int]:
        return [r[0] for r in self.records[p]]


def poll_until(
    src: ConfluentSource, got: Collected, done: Callable[[], bool], timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out; got {got.changes}, {got.records}"
        got.add(src.poll(0.2))
        got.changes += src.rebalances()


def test_every_record_with_exact_offsets_values_and_timestamps(broker, topic):
    produce_two_partitions(broker, topic)
    src = source(broker, topic)
    got = Collected()
    try:
        assert src.broker_contact_age() is None  # nothing heard yet
        poll_until(src, got, lambda: all(len(got.records[p]) >= PER_PARTITION for p in (0, 1)))
        assert got.changes[0] == ("assigned", frozenset({(topic, 0), (topic, 1)}))
        for p in (0, 1):
            assert got.offsets(p) == list(range(PER_PARTITION))
            assert [r[2] for r in got.records[p]] == [
                expected_value(p, i) for i in range(PER_PARTITION)
            ]
            assert [r[1] for r in got.records[p]] == [
                None if i % 7 == 0 else f"k{i}".encode() for i in range(PER_PARTITION)
            ]
            assert [r[3] for r in got.records[p]] == [
                (T0_MS + 1000 * p + i) / 1000.0 for i in range(PER_PARTITION)
            ]
            assert src.position(topic, p) == PER_PARTITION
        # nothing more, and nothing twice
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            assert src.poll(0.2) == []
        age = src.broker_contact_age()
        assert age is not None and age < 3.0
        assert src.session_timeout_seconds == 6.0
    finally:
        src.close()


def test_seek_right_after_assignment_then_back_and_forward(broker, topic):
    produce_two_partitions(broker, topic)
    src = source(broker, topic)
    got = Collected()
    try:
        # like the daemon: seek as soon as a poll hands over the assignment, and drop
        # what that poll returned for the partitions sought
        while not got.changes:
            src.poll(0.05)
            got.changes += src.rebalances()
        src.seek(topic, 0, 20)
        src.seek(topic, 1, 45)
        assert (src.position(topic, 0), src.position(topic, 1)) == (20, 45)
        poll_until(src, got, lambda: len(got.records[0]) >= 40 and len(got.records[1]) >= 15)
        assert got.offsets(0) == list(range(20, PER_PARTITION))
        assert got.offsets(1) == list(range(45, PER_PARTITION))
        assert got.records[1][0][2] == expected_value(1, 45)

        # back on one partition, forward on the other, after everything was consumed
        src.seek(topic, 0, 3)
        src.seek(topic, 1, 58)
        again = Collected()
        poll_until(src, again, lambda: len(again.records[0]) >= 57 and len(again.records[1]) >= 2)
        assert again.offsets(0) == list(range(3, PER_PARTITION))
        assert again.offsets(1) == [58, 59]
        assert again.records[0][0][2] == expected_value(0, 3)
        assert src.position(topic, 0) == src.position(topic, 1) == PER_PARTITION
    finally:
        src.close()


def test_seek_discards_records_already_fetched_and_queued_locally(broker, topic):
    """With 7 records per poll, librdkafka holds the rest of each partition in its local
    queue: none of those may come out after a seek, in either direction."""
    produce_two_partitions(broker, topic)
    src = source(broker, topic, max_poll_records=7)
    got = Collected()
    try:
        poll_until(src, got, lambda: len(got.records[0]) >= 7)
        time.sleep(0.3)  # let the fetcher queue the rest
        src.seek(topic, 0, 50)  # forward, past records already queued
        after = Collected()
        poll_until(src, after, lambda: len(after.records[0]) >= 3)
        assert after.offsets(0)[:3] == [50, 51, 52]
        src.seek(topic, 0, 2)  # back, while 53.. are queued
        back = Collected()
        poll_until(src, back, lambda: len(back.records[0]) >= PER_PARTITION - 2)
        assert back.offsets(0) == list(range(2, PER_PARTITION))
        # the other partition went on untouched: every record once, in order
        seen1 = got.offsets(1) + after.offsets(1) + back.offsets(1)
        assert seen1 == list(range(len(seen1)))
    finally:
        src.close()


def test_seek_refused_by_librdkafka_is_applied_by_the_next_polls(broker, topic, monkeypatch):
    """A seek issued before librdkafka has even been told of the assignment (inside the
    assignment callback) is refused; with no retry budget it stays pending, and the polls
    that follow return the partition's records from exactly that offset, none before."""
    produce_two_partitions(broker, topic)
    monkeypatch.setattr(confluent_mod, "_SEEK_WAIT", 0.0)
    src = source(broker, topic)
    refused: list[bool] = []
    original = src._on_assign

    def assign_then_seek(consumer: Any, partitions: list[Any]) -> None:
        original(consumer, partitions)
        src.seek(topic, 1, 33)
        refused.append((topic, 1) in src._pending)

    src._on_assign = assign_then_seek  # type: ignore[method-assign]
    src._consumer.subscribe([topic], on_assign=assign_then_seek, on_revoke=src._on_revoke)
    got = Collected()
    try:
        poll_until(
            src, got, lambda: len(got.records[0]) >= PER_PARTITION and len(got.records[1]) >= 27
        )
        assert refused == [True]
        assert not src._pending
        assert got.offsets(0) == list(range(PER_PARTITION))
        assert got.offsets(1) == list(range(33, PER_PARTITION))
    finally:
        src.close()


def test_commit_then_a_new_consumer_of_the_group_resumes_there(broker, topic):
    produce_two_partitions(broker, topic)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = source(broker, topic, group)
    got = Collected()
    try:
        poll_until(first, got, lambda: all(len(got.records[p]) >= PER_PARTITION for p in (0, 1)))
        assert first.commit({(topic, 0): 42, (topic, 1): 17}, timeout_seconds=5.0)
        assert first.commit({}) is True
    finally:
        first.close()

    # max_poll_records=1: the poll that hands over the assignment returns at most one
    # record, so at least one partition's position is resolved from the committed offset
    second = source(broker, topic, group, max_poll_records=1)
    resumed = Collected()
    try:
        while not resumed.changes:
            resumed.add(second.poll(0.2))
            resumed.changes += second.rebalances()
        for p, committed in ((0, 42), (1, 17)):
            seen = resumed.offsets(p)
            assert second.position(topic, p) == (seen[-1] + 1 if seen else committed)
            assert seen in ([], [committed])
        poll_until(
            second,
            resumed,
            lambda: (
                len(resumed.records[0]) >= PER_PARTITION - 42
                and len(resumed.records[1]) >= PER_PARTITION - 17
            ),
        )
        assert resumed.offsets(0) == list(range(42, PER_PARTITION))
        assert resumed.offsets(1) == list(range(17, PER_PARTITION))
    finally:
        second.close()


def test_position_before_and_after_consuming(broker, topic):
    produce_two_partitions(broker, topic)
    src = source(broker, topic, max_poll_records=1)
    got = Collected()
    try:
        while not got.changes:
            got.add(src.poll(0.2))
            got.changes += src.rebalances()
        for p in (0, 1):  # nothing committed: auto.offset.reset=earliest, the first offset
            assert src.position(topic, p) == len(got.records[p])
        poll_until(src, got, lambda: len(got.records[0]) >= 5)
        assert src.position(topic, 0) == got.offsets(0)[-1] + 1
        poll_until(src, got, lambda: all(len(got.records[p]) >= PER_PARTITION for p in (0, 1)))
        assert src.position(topic, 0) == src.position(topic, 1) == PER_PARTITION
    finally:
        src.close()


def test_two_consumers_split_the_partitions_and_report_rebalances(broker, topic):
    produce_two_partitions(broker, topic)
    group = f"g-{uuid.uuid4().hex[:8]}"
    both = frozenset({(topic, 0), (topic, 1)})
    a = source(broker, topic, group)
    got_a, got_b = Collected(), Collected()
    b: ConfluentSource | None = None

    def owned(changes: list[tuple[str, frozenset[tuple[str, int]]]]) -> frozenset[Any]:
        current: frozenset[Any] = frozenset()
        for kind, parts in changes:
            current = current | parts if kind == "assigned" else current - parts
        return current

    try:
        poll_until(a, got_a, lambda: owned(got_a.changes) == both)
        assert got_a.changes == [("assigned", both)]

        b = source(broker, topic, group)  # joins: the group rebalances
        deadline = time.monotonic() + 30
        while not (len(owned(got_a.changes)) == 1 and len(owned(got_b.changes)) == 1):
            assert time.monotonic() < deadline, (got_a.changes, got_b.changes)
            for src, got in ((a, got_a), (b, got_b)):
                got.add(src.poll(0.05))
                got.changes += src.rebalances()
        assert owned(got_a.changes) | owned(got_b.changes) == both
        assert got_a.changes[1][0] == "revoked"  # eager protocol: all revoked, then split
        assert got_a.changes[-1][0] == got_b.changes[-1][0] == "assigned"
        # between them, every record once (b resumes where nothing was committed: 0)
        assert all(len(parts) > 0 for _, parts in got_a.changes + got_b.changes)

        b.close()  # leaves the group: a takes both partitions back
        got_b.changes += b.rebalances()
        b = None
        assert owned(got_b.changes) == frozenset()
        poll_until(a, got_a, lambda: owned(got_a.changes) == both, timeout=30)
        assert got_a.changes[-1][0] == "assigned"
    finally:
        a.close()
        if b is not None:
            b.close()


def test_partition_count_and_a_missing_topic(broker, topic):
    create_topic(broker, topic, 2)
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    src = ConfluentSource([broker.bootstrap], f"g-{topic}", [missing], dict(FAST))
    try:
        assert src.partitions(topic) == 2
        assert src.partitions(f"never-{uuid.uuid4().hex[:8]}") is None
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # errors of the subscription are logged, not raised
            assert src.poll(0.2) == []
    finally:
        src.close()


def test_commit_and_close_are_bounded_and_contact_age_grows_while_the_broker_is_frozen(
    private_broker, monkeypatch
):
    monkeypatch.setattr(confluent_mod, "_CLOSE_TIMEOUT", 1.0)
    topic = f"frozen-{uuid.uuid4().hex[:8]}"
    produce_two_partitions(private_broker, topic)
    src = source(private_broker, topic)
    got = Collected()
    closed = False
    try:
        poll_until(src, got, lambda: all(len(got.records[p]) >= PER_PARTITION for p in (0, 1)))
        assert src.commit({(topic, 0): 10, (topic, 1): 10}, timeout_seconds=5.0)
        freeze(private_broker)
        started = time.monotonic()
        assert not src.commit({(topic, 0): 20, (topic, 1): 20}, timeout_seconds=1.0)
        assert time.monotonic() - started < 3.0
        started = time.monotonic()  # the first one is still waiting: refused at once
        assert not src.commit({(topic, 0): 30}, timeout_seconds=1.0)
        assert time.monotonic() - started < 0.5
        end = time.monotonic() + 3.5
        while time.monotonic() < end:
            assert src.poll(0.2) == []
        age = src.broker_contact_age()
        assert age is not None and age > 2.0
        thaw(private_broker)
        deadline = time.monotonic() + 20
        while not src.commit({(topic, 0): 40, (topic, 1): 40}, timeout_seconds=1.0):
            assert time.monotonic() < deadline
            src.poll(0.2)
        deadline = time.monotonic() + 10  # statistics every second report the contact
        while (age := src.broker_contact_age()) is None or age >= 2.0:
            assert time.monotonic() < deadline, age
            src.poll(0.2)

        # a commit left in flight by an outage: librdkafka's close would wait for it forever
        freeze(private_broker)
        assert not src.commit({(topic, 0): 50}, timeout_seconds=0.5)
        started = time.monotonic()
        src.close()
        closed = True
        assert time.monotonic() - started < 3.0
    finally:
        thaw(private_broker)
        if not closed:
            src.close()
