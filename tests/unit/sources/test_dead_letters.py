"""KafkaDeadLetters' bookkeeping without a broker: send never raises or blocks, failures
are kept and resent, the retention bound drops the oldest, flush is bounded and honest."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

import driftwatch.sources.kafka as kafka_mod
from driftwatch.sources.base import DurableDeadLetters, Record
from driftwatch.sources.kafka import KafkaDeadLetters
from tests.unit.sources.test_state_store import FakeFuture


class FlakyProducer:
    """``down``: send raises (as kafka-python does without metadata); ``hold``: futures stay
    pending until released; ``refuse``: send raises this error."""

    DEFAULT_CONFIG = KafkaProducer.DEFAULT_CONFIG

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.down = False
        self.hold = False
        self.refuse: BaseException | None = None
        self.calls = 0
        self.acked: list[bytes | None] = []
        self.held: list[tuple[FakeFuture, bytes | None]] = []

    def send(self, topic: str, key: bytes | None, value: bytes | None, **_: Any) -> FakeFuture:
        self.calls += 1
        if value is None and key is None:
            raise ValueError("Need at least one: key or value")
        if self.refuse is not None:
            raise self.refuse
        if self.down:
            raise KafkaTimeoutError("Failed to update metadata after 0.5 secs.")
        if self.hold:
            future = FakeFuture(done=False)
            self.held.append((future, value))
            return future
        self.acked.append(value)
        return FakeFuture()

    def release(self, error: BaseException | None = None) -> None:
        for future, value in self.held:
            if error is None:
                self.acked.append(value)
            future.resolve(error)
        self.held = []

    def close(self, timeout: float | None = None) -> None:
        if self.held:
            raise KafkaTimeoutError("Timeout waiting for future")


def record(offset: int, value: bytes | None = None, key: bytes | None = b"m") -> Record:
    return Record("p", 0, offset, key, value if value is not None else b"%d" % offset, 0.0)


@pytest.fixture
def dl(monkeypatch: pytest.MonkeyPatch) -> KafkaDeadLetters:
    monkeypatch.setattr(kafka_mod, "KafkaProducer", FlakyProducer)
    return KafkaDeadLetters(["127.0.0.1:1"], "dlq", {}, max_retained=5)


def fake(dl: KafkaDeadLetters) -> FlakyProducer:
    p = dl._producer
    assert isinstance(p, FlakyProducer)
    return p


def test_satisfies_the_daemons_protocol_and_bounds_blocking(dl):
    sink: DurableDeadLetters = dl
    assert fake(dl).config["max_block_ms"] == 500  # kafka.client may override it
    sink.send(record(1), "invalid_json", "x")
    assert sink.flush(1.0) is True
    assert (sink.sent, sink.failed, sink.lost) == (1, 0, 0)


def test_failures_are_kept_resent_and_counted(dl):
    p = fake(dl)
    p.down = True
    dl.send(record(1), "r", "d")
    calls = p.calls
    for i in range(2, 5):
        dl.send(record(i), "r", "d")  # never raises
    assert p.calls == calls  # a known outage: no more blocking sends until flush retries
    started = time.monotonic()
    assert dl.flush(0.5) is False
    assert time.monotonic() - started < 0.5
    assert dl.failed == 2 and dl.sent == 0  # the first send, then the flush's retry
    p.down = False
    assert dl.flush(1.0) is True
    assert p.acked == [b"1", b"2", b"3", b"4"]  # in order, each once
    assert (dl.sent, dl.lost) == (4, 0)


def test_beyond_the_bound_the_oldest_waiting_letter_is_lost(dl, caplog):
    p = fake(dl)
    p.down = True
    for i in range(8):
        dl.send(record(i), "r", "d")
    assert dl.lost == 3
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 1  # once per burst
    p.down = False
    assert dl.flush(1.0) is True  # every letter not counted as lost is acknowledged
    assert p.acked == [b"3", b"4", b"5", b"6", b"7"]


def test_the_bound_counts_letters_in_flight(dl):
    p = fake(dl)
    p.hold = True
    for i in range(5):
        dl.send(record(i), "r", "d")
    dl.send(record(5), "r", "d")  # five in flight already: this one is dropped
    assert dl.lost == 1 and len(p.held) == 5
    p.release()
    assert dl.flush(1.0) is True and dl.sent == 5


def test_pending_acknowledgements_bound_flush_and_failed_ones_are_resent(dl):
    p = fake(dl)
    p.hold = True
    dl.send(record(1), "r", "d")
    started = time.monotonic()
    assert dl.flush(0.3) is False  # a future that never resolves
    assert 0.25 < time.monotonic() - started < 1.0
    p.hold = False
    p.release(KafkaTimeoutError("Expiring 1 record(s): delivery timeout"))
    assert dl.flush(1.0) is True  # resent within the same flush
    assert dl.failed == 1 and dl.sent == 1 and p.acked == [b"1"]


def test_a_letter_the_broker_can_never_accept_is_lost_not_retried_forever(dl):
    p = fake(dl)
    p.refuse = MessageSizeTooLargeError("The message is 9000000 bytes")
    dl.send(record(1), "too_large", "d")
    assert dl.lost == 1
    p.refuse = None
    assert dl.flush(1.0) is True


def test_a_record_without_key_or_value_is_still_dead_lettered(dl):
    dl.send(Record("p", 0, 7, None, None, 0.0), "invalid_json", "empty record")
    assert dl.flush(1.0) is True
    assert fake(dl).acked == [b""]


def test_close_never_raises(dl):
    fake(dl).hold = True
    dl.send(record(1), "r", "d")
    started = time.monotonic()
    dl.close(timeout=0.4)
    assert time.monotonic() - started < 3
