"""The state topic's layout without a broker: what a reader assembles from any log, and
that every prefix of the log a sequence of saves writes (a crash at any point) still
holds a complete checkpoint."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

import driftwatch.sources.kafka as kafka_mod
from driftwatch import faults
from driftwatch.sources.kafka import (
    KafkaStateStore,
    StateGeneration,
    apply_state_record,
    assemble_state,
    chunk_key,
)

Log = list[tuple[bytes, bytes | None]]
LogView = Sequence[tuple[bytes, bytes | None]]


class FakeFuture:
    def __init__(self, error: BaseException | None = None, done: bool = True) -> None:
        self.exception = error
        self._done = threading.Event()
        if done:
            self._done.set()

    @property
    def is_done(self) -> bool:
        return self._done.is_set()

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    def resolve(self, error: BaseException | None = None) -> None:
        self.exception = error
        self._done.set()

    def get(self, timeout: float | None = None) -> Any:
        if not self._done.wait(timeout):
            raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")
        if self.exception is not None:
            raise self.exception
        return None


class FakeProducer:
    """Records what is produced (the state topic's log); ``fail_at`` fails the n-th send's
    acknowledgement (0-based), ``hang_at`` never acknowledges it."""

    DEFAULT_CONFIG = KafkaProducer.DEFAULT_CONFIG

    def __init__(self, **_: Any) -> None:
        self.log: Log = []
        self.fail_at: set[int] = set()
        self.hang_at: set[int] = set()
        self.sends = 0

    def send(self, topic: str, key: bytes, value: bytes | None, **_: Any) -> FakeFuture:
        n = self.sends
        self.sends += 1
        if n in self.fail_at:
            return FakeFuture(KafkaTimeoutError("broker unreachable"))
        if n in self.hang_at:
            return FakeFuture(done=False)
        self.log.append((key, value))
        return FakeFuture()

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> KafkaStateStore:
    monkeypatch.setattr(kafka_mod, "KafkaProducer", FakeProducer)
    monkeypatch.setattr(KafkaStateStore, "_ensure_topic", lambda self: None)
    s = KafkaStateStore(["127.0.0.1:1"], "state", {}, chunk_bytes=4, timeout=0.2)
    s._adopt({}, 0)  # an empty topic, as refresh() reads it
    return s


def producer(store: KafkaStateStore) -> FakeProducer:
    p = store._producer
    assert isinstance(p, FakeProducer)
    return p


def read(log: LogView) -> dict[bytes, bytes]:
    latest: dict[bytes, bytes] = {}
    for key, value in log:
        apply_state_record(latest, key, value)
    return latest


def blobs(log: LogView) -> dict[str, bytes]:
    return assemble_state(read(log))[0]


def manifest(generation: str, chunks: int, blob: bytes, **extra: Any) -> bytes:
    m = {"generation": generation, "chunks": chunks, "sha256": hashlib.sha256(blob).hexdigest()}
    return json.dumps({**m, **extra}).encode()


def test_assembles_the_manifests_generation_ignoring_orphans_and_old_generations():
    log: Log = [
        (chunk_key("p-0", "g1", 0), b"old-"),
        (chunk_key("p-0", "g1", 1), b"blob"),
        (b"p-0", manifest("g1", 2, b"old-blob", layout=2)),
        (chunk_key("p-0", "g2", 0), b"new-"),
        (chunk_key("p-0", "g2", 1), b"blob"),
        (chunk_key("p-0", "g3", 0), b"orphan: a save that crashed"),
        (b"p-0", manifest("g2", 2, b"new-blob", layout=2)),
        (b"__sentinel__abc", b""),
        (b"__sentinel__abc", None),
    ]
    found, generations = assemble_state(read(log))
    assert found == {"p-0": b"new-blob"}
    assert generations == {
        "p-0": StateGeneration("g2", (chunk_key("p-0", "g2", 0), chunk_key("p-0", "g2", 1)))
    }


def test_tombstones_delete_and_a_manifest_with_missing_or_corrupt_chunks_is_ignored():
    good = [(chunk_key("a", "g", 0), b"xy"), (b"a", manifest("g", 1, b"xy", layout=2))]
    assert blobs(good) == {"a": b"xy"}
    assert blobs([*good, (chunk_key("a", "g", 0), None)]) == {}  # its chunk tombstoned
    assert blobs([*good, (b"a", None)]) == {}  # the manifest itself tombstoned
    corrupt = [(chunk_key("a", "g", 0), b"xz"), (b"a", manifest("g", 1, b"xy", layout=2))]
    found, generations = assemble_state(read(corrupt))
    assert found == {}  # sha mismatch
    assert generations["a"].generation == "g"  # still known, so the next save deletes it
    assert blobs([(b"a", b"{not json")]) == {}


def test_reads_the_previous_layout():
    """Layout 1: chunks ``{key}#{i}`` holding the generation id then the bytes."""
    log: Log = [(b"p-1#0", b"g1abc"), (b"p-1#1", b"g1def"), (b"p-1", manifest("g1", 2, b"abcdef"))]
    found, generations = assemble_state(read(log))
    assert found == {"p-1": b"abcdef"}
    assert generations["p-1"].chunk_keys == (b"p-1#0", b"p-1#1")
    half_overwritten = [*log, (b"p-1#0", b"g2xyz")]  # how layout 1 lost checkpoints
    assert blobs(half_overwritten) == {}


def test_every_prefix_of_a_save_sequence_holds_a_complete_checkpoint(store):
    """A crash after any record of any save leaves the last acknowledged manifest's
    checkpoint readable: chunks go under new keys, the manifest after them, tombstones of
    the replaced generation last."""
    saves = [b"first checkpoint", b"second, longer checkpoint!", b"3rd"]
    for blob in saves:
        store.save("p-0", blob)
    log = producer(store).log
    first_manifest = next(i for i, (k, _) in enumerate(log) if k == b"p-0")
    expected = None
    manifests = iter(saves)
    for n in range(len(log) + 1):
        if n > 0 and log[n - 1][0] == b"p-0":
            expected = next(manifests)
        got = blobs(log[:n]).get("p-0")
        assert got == expected, f"after {n} records"
        if n > first_manifest:
            assert got is not None
    # the end state: only the last generation's chunks and its manifest remain
    latest = read(log)
    assert set(latest) == {b"p-0", *store._current["p-0"].chunk_keys}
    assert blobs(log) == {"p-0": b"3rd"}


def test_after_a_restart_the_store_learns_the_generation_it_replaces(store, monkeypatch):
    store.save("p-0", b"before the restart")
    log = list(producer(store).log)
    monkeypatch.setattr(kafka_mod, "KafkaProducer", FakeProducer)
    restarted = KafkaStateStore(["127.0.0.1:1"], "state", {}, chunk_bytes=4)
    restarted._adopt(read(log), 0)  # what refresh() reads
    assert restarted.load("p-0") == b"before the restart"
    restarted.save("p-0", b"after")
    log += producer(restarted).log
    assert blobs(log) == {"p-0": b"after"}
    assert set(read(log)) == {b"p-0", *restarted._current["p-0"].chunk_keys}  # no leftovers


def test_replacing_a_layout_1_checkpoint_tombstones_its_chunks(store):
    old: Log = [(b"p-1#0", b"g1abc"), (b"p-1", manifest("g1", 1, b"abc"))]
    store._adopt(read(old), 0)
    store.save("p-1", b"new")
    log = old + producer(store).log
    assert blobs(log) == {"p-1": b"new"}
    assert b"p-1#0" not in read(log)


@pytest.mark.parametrize("failing", ["chunk", "manifest"])
def test_a_failed_produce_raises_and_leaves_the_previous_checkpoint(store, failing):
    store.save("p-0", b"durable one")
    p = producer(store)
    n_chunks = 3  # b"not durable" in 4-byte chunks
    p.fail_at = {p.sends + (1 if failing == "chunk" else n_chunks)}
    with pytest.raises(KafkaTimeoutError):
        store.save("p-0", b"not durable")
    assert blobs(p.log) == {"p-0": b"durable one"}
    assert store.load("p-0") == b"durable one"
    store.save("p-0", b"next")
    assert blobs(p.log) == {"p-0": b"next"}
    leftovers = set(read(p.log)) - {b"p-0", *store._current["p-0"].chunk_keys}
    if failing == "chunk":  # known unreferenced: tombstoned after the next manifest
        assert leftovers == set()
    else:  # the manifest may have been written after all: its chunks are left alone
        assert len(leftovers) == n_chunks


def test_an_unacknowledged_chunk_times_out_instead_of_hanging(store):
    store.save("p-0", b"durable one")
    p = producer(store)
    p.hang_at = {p.sends}
    with pytest.raises(KafkaTimeoutError, match="not acknowledged in time"):
        store.save("p-0", b"never acknowledged")
    assert blobs(p.log) == {"p-0": b"durable one"}


def test_chunk_size_from_the_environment(monkeypatch):
    monkeypatch.setattr(kafka_mod, "KafkaProducer", FakeProducer)
    monkeypatch.setattr(KafkaStateStore, "_ensure_topic", lambda self: None)
    monkeypatch.setenv("DRIFTWATCH_STATE_CHUNK_BYTES", "1000")
    assert KafkaStateStore(["h:1"], "t", {}).chunk_bytes == 1000
    monkeypatch.delenv("DRIFTWATCH_STATE_CHUNK_BYTES")
    assert KafkaStateStore(["h:1"], "t", {}).chunk_bytes == 512 * 1024


def test_fault_specs():
    assert faults.parse(None) is None and faults.parse("") is None
    assert faults.parse("state_store.after_manifest") == ("state_store.after_manifest", None, 1)
    assert faults.parse("state_store.after_chunk:2@3") == ("state_store.after_chunk", "2", 3)
    with pytest.raises(ValueError, match="NAME"):
        faults.parse("state_store.after_chunk@x")
    faults.point("state_store.after_chunk", 2)  # unset in tests: a no-op


def test_client_options_do_not_collide_with_the_stores_own(monkeypatch):
    """``kafka.client`` may set acks or max_request_size (used to be a TypeError)."""
    seen: dict[str, Any] = {}

    class Capturing(FakeProducer):
        def __init__(self, **config: Any) -> None:
            super().__init__()
            seen.update(config)

    monkeypatch.setattr(kafka_mod, "KafkaProducer", Capturing)
    monkeypatch.setattr(KafkaStateStore, "_ensure_topic", lambda self: None)
    KafkaStateStore(["h:1"], "t", {"acks": 1, "max_request_size": 5, "linger_ms": 2})
    assert seen["acks"] == "all"  # durability is not optional here
    assert seen["max_request_size"] >= 2 * 512 * 1024 and seen["linger_ms"] == 2
    assert seen["enable_idempotence"] is False
