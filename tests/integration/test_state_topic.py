"""The state topic and the dead-letter producer against real brokers: kill -9 in the middle
of a checkpoint write, and a broker that stops answering.

Crash points are hit deterministically with the test-only ``DRIFTWATCH_FAULT`` hook
(:mod:`driftwatch.faults`): the daemon SIGKILLs itself there. Broker outages use a
private Tansu process stopped with SIGSTOP (never the session broker).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from driftwatch.demo.broker import Broker, free_port
from driftwatch.sources.base import Record
from driftwatch.sources.kafka import KafkaDeadLetters, KafkaStateStore, assemble_state
from tests.helpers import http_get, wait_for
from tests.integration.conftest import DaemonProcess, freeze, thaw
from tests.integration.test_daemon import create_topic
from tests.integration.test_recovery import (
    MODELS,
    final_state,
    multi_model_config,
    send,
    stream,
)

#: small chunks, so that even a checkpoint of six empty models has several (~3 KB)
CHUNK_BYTES = 1000

#: where the daemon kills itself, each during its third checkpoint (so the previous one
#: holds events and its offsets are committed: losing it would lose them): after 2 chunks
#: acknowledged (no manifest), after every chunk but before the manifest, after the
#: manifest but before the replaced chunks are tombstoned
CRASH_POINTS = [
    "state_store.after_chunk:2@3",
    "state_store.before_manifest@3",
    "state_store.after_manifest@3",
]


def generations_on(latest: dict[bytes, bytes]) -> set[str]:
    """Every generation with a chunk on the topic (layout 2 keys ``{key}@{gen}#{i}``)."""
    return {k.decode().split("@", 1)[1].split("#", 1)[0] for k in latest if b"@" in k}


def ready(d: DaemonProcess) -> bool:
    try:
        return http_get(d.base + "/readyz", timeout=1.0)[0] == 200
    except OSError:
        return False


def feed_until_killed(d: DaemonProcess, point: str, feed_one: Callable[[], None]) -> None:
    """Feed the daemon a batch at a time, once it consumes, until the fault kills it."""
    assert d.proc is not None
    deadline = time.monotonic() + 45
    while d.proc.poll() is None:
        assert time.monotonic() < deadline, f"{point} never reached"
        if ready(d):
            feed_one()
        time.sleep(0.3)
    assert d.proc.returncode == -signal.SIGKILL, d.log.read_text()[-2000:]
    assert f"DRIFTWATCH_FAULT reached at {point.partition('@')[0]}" in d.log.read_text()


def test_kill_9_mid_checkpoint_write_restores_the_previous_one_exactly(
    broker, topic, tmp_path, daemons
):
    create_topic(broker, topic, partitions=1)
    state_topic = f"state-{topic}"
    key = f"{topic}-0"
    per_model = 600
    items = stream(per_model)
    batches = [items[i : i + 60] for i in range(0, len(items), 60)]  # 60 batches
    cfg = multi_model_config(
        broker, tmp_path, topic, state={"backend": "kafka", "topic": state_topic}
    )
    env = {"DRIFTWATCH_STATE_CHUNK_BYTES": str(CHUNK_BYTES)}
    reader = KafkaStateStore([broker.bootstrap], state_topic, {})
    try:
        orphans = 0
        for point in CRASH_POINTS:
            d = DaemonProcess(cfg, tmp_path, env={**env, "DRIFTWATCH_FAULT": point})
            daemons.append(d.start(wait_ready=False))  # it may reach the point while joining
            feed_until_killed(d, point, lambda: send(broker, topic, batches.pop(0)))

            latest = reader.read_topic()
            blobs, current = assemble_state(latest)
            assert key in blobs  # the previous checkpoint is complete and verifies
            assert len(current[key].chunk_keys) >= 2  # a multi-chunk checkpoint
            # the crash left exactly one more generation no manifest names: the new
            # chunks (no manifest yet), or the replaced chunks (not yet tombstoned)
            assert len(generations_on(latest) - {current[key].generation}) == orphans + 1
            orphans += 1

        d = DaemonProcess(cfg, tmp_path, env=env)
        daemons.append(d.start())
        for batch in batches:
            send(broker, topic, batch)
        expected = dict.fromkeys(MODELS, per_model)

        ref_dir = tmp_path / "reference"
        ref_dir.mkdir()
        ref_cfg = multi_model_config(broker, ref_dir, topic)
        ref_cfg["kafka"]["group_id"] = f"reference-{topic}"
        ref = DaemonProcess(ref_cfg, ref_dir)
        daemons.append(ref.start())

        crashed = final_state(d, expected)
        uninterrupted = final_state(ref, expected)
        assert crashed == uninterrupted
        assert all(v["window"] == per_model for v in crashed.values())
        assert all(any(f[3] for f in v["features"]) for v in crashed.values())  # drift seen
        assert d.stop() == 0 and ref.stop() == 0
        log = d.log.read_text()  # every run's log: they share the file
        assert log.count("partition 0: restored 6 model(s)") == len(CRASH_POINTS)  # restarts
        assert "incomplete" not in log and "checksum" not in log

        # the clean shutdown's checkpoint replaced the last one and tombstoned its chunks;
        # only the crashes' leftovers remain besides it
        latest = reader.read_topic()
        blobs, current = assemble_state(latest)
        assert key in blobs
        assert len(generations_on(latest) - {current[key].generation}) == orphans
    finally:
        reader.close()


# -- the dead-letter producer against a broker that stops answering ----------------------------


def letter(i: int) -> Record:
    return Record("predictions", 0, i, b"m", b'{"bad": %d' % i, 0.0)


def dead_letter_sources(b: Broker, topic: str, expected: int) -> list[str]:
    """The ``driftwatch-source`` header of every record on the DLQ (read until ``expected``
    arrived, plus a little longer to catch duplicates)."""
    consumer = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    got: list[str] = []
    deadline = time.monotonic() + 20
    quiet_until = None
    while time.monotonic() < deadline:
        batch = [r for recs in consumer.poll(300).values() for r in recs]
        got.extend(dict(r.headers)["driftwatch-source"].decode() for r in batch)
        if len(got) >= expected:
            quiet_until = quiet_until or time.monotonic() + 1.0
            if time.monotonic() > quiet_until:
                break
    consumer.close()
    return got


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - started


def flushed(dl: KafkaDeadLetters) -> bool:
    return dl.flush(1.0)


def test_dead_letters_survive_a_frozen_broker_exactly_once(private_broker):
    """Metadata known, broker frozen: sends queue without blocking, flush says False in
    bounded time, and once the broker is back every letter lands once."""
    b = private_broker
    create_topic(b, "dlq", partitions=1)
    dl = KafkaDeadLetters([b.bootstrap], "dlq", {})
    dl.send(letter(0), "invalid_json", "warm-up")
    assert dl.flush(10.0) is True
    freeze(b)
    slowest = max(timed(dl.send, letter(i), "invalid_json", "d")[1] for i in range(1, 51))
    assert slowest < 0.6
    ok, took = timed(dl.flush, 1.0)
    assert ok is False and took < 2.0
    thaw(b)
    wait_for(lambda: flushed(dl), 30, what="flush() to report every dead letter acknowledged")
    assert (dl.sent, dl.failed, dl.lost) == (51, 0, 0)
    dl.close()
    got = dead_letter_sources(b, "dlq", 51)
    assert sorted(got) == sorted(f"predictions/0/{i}" for i in range(51))  # each once


def test_dead_letters_wait_out_an_outage_before_the_topic_is_known(private_broker):
    """No metadata for the DLQ yet when the broker freezes: one send blocks for max_block_ms,
    later ones are kept without touching the producer; flush stays bounded; close too."""
    b = private_broker
    dl = KafkaDeadLetters([b.bootstrap], "dlq", {})
    create_topic(b, "dlq", partitions=1)  # after the producer's bootstrap: not in its metadata
    freeze(b)

    def send_200() -> None:
        for i in range(200):
            dl.send(letter(i), "invalid_json", "d")

    _, took = timed(send_200)
    assert took < 1.5  # one 0.5 s metadata wait, not 200 of them
    assert dl.failed == 1
    ok, took = timed(dl.flush, 1.0)
    assert ok is False and took < 2.5
    thaw(b)
    wait_for(lambda: flushed(dl), 30, what="flush() to report every dead letter acknowledged")
    assert (dl.sent, dl.lost) == (200, 0)
    got = dead_letter_sources(b, "dlq", 200)
    assert sorted(got) == sorted(f"predictions/0/{i}" for i in range(200))  # each once

    other = KafkaDeadLetters([b.bootstrap], "dlq", {})
    freeze(b)
    other.send(letter(999), "invalid_json", "d")
    _, took = timed(other.close, 2.0)
    assert took < 5.0  # never blocks long, never raises
    thaw(b)
    dl.close()


def test_failed_deliveries_are_resent_at_least_once(private_broker):
    """Produces that time out while the broker is frozen fail their futures; the letters
    are resent, so each arrives at least once (a duplicate when the frozen broker wrote
    the first copy after all)."""
    b = private_broker
    create_topic(b, "dlq", partitions=1)
    fast = {"request_timeout_ms": 1000, "delivery_timeout_ms": 1500, "retry_backoff_ms": 100}
    dl = KafkaDeadLetters([b.bootstrap], "dlq", fast)
    dl.send(letter(0), "invalid_json", "warm-up")
    assert dl.flush(10.0) is True
    freeze(b)
    for i in range(1, 21):
        dl.send(letter(i), "invalid_json", "d")
    time.sleep(2.5)  # past the delivery timeout
    assert dl.flush(0.5) is False
    assert dl.failed >= 1
    thaw(b)
    wait_for(lambda: flushed(dl), 30, what="flush() to report every dead letter acknowledged")
    assert dl.sent == 21 and dl.lost == 0
    dl.close()
    got = dead_letter_sources(b, "dlq", 21)
    assert set(got) == {f"predictions/0/{i}" for i in range(21)}


def test_startup_needs_the_broker():
    """The producer bootstraps in its constructor: no broker, no daemon (it exits)."""
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaDeadLetters([f"127.0.0.1:{free_port()}"], "dlq", {"bootstrap_timeout_ms": 1000})
