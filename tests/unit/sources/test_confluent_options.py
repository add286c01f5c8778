"""ConfluentSource without a broker: ``kafka.client`` validation against librdkafka itself,
the consumer configuration driftwatch builds, and how consumed messages become columns
(runs per partition, timestamps, error messages, pending seeks, rebalance queue)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import orjson
import pytest

pytest.importorskip("confluent_kafka")

from confluent_kafka import KafkaError, Message, TopicPartition

from driftwatch.sources.confluent import (
    MISSING,
    ConfluentSource,
    _config,
    _defaults,
    check_client_options,
)

# -- check_client_options -------------------------------------------------------------------


def test_valid_librdkafka_options_pass():
    assert (
        check_client_options(
            {
                "session.timeout.ms": 6000,
                "fetch.wait.max.ms": 50,
                "auto.offset.reset": "latest",
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.partition.eof": True,
                "statistics.interval.ms": 0,
                "security.protocol": "plaintext",
            }
        )
        == []
    )
    assert check_client_options({}) == []


@pytest.mark.parametrize(
    "key",
    [
        "bootstrap.servers",
        "metadata.broker.list",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "key.deserializer",
        "value.deserializer",
        "stats_cb",
        "on_commit",
    ],
)
def test_keys_driftwatch_sets_are_refused(key):
    [problem] = check_client_options({key: "x"})
    assert problem.startswith(f"kafka.client.{key}: set by driftwatch")


def test_every_bad_key_is_named_on_its_own():
    problems = check_client_options(
        {
            "session.timeout.ms": 6000,  # fine
            "fetch_wait_max_ms": 10,  # kafka-python spelling: unknown to librdkafka
            "no.such.property": 1,
            "fetch.wait.max.ms": "soon",  # invalid value
            "auto.offset.reset": "sideways",
            "group.id": "mine",
        }
    )
    assert len(problems) == 5, problems
    by_key = {p.split(":", 1)[0]: p for p in problems}
    assert set(by_key) == {
        "kafka.client.fetch_wait_max_ms",
        "kafka.client.no.such.property",
        "kafka.client.fetch.wait.max.ms",
        "kafka.client.auto.offset.reset",
        "kafka.client.group.id",
    }
    assert "No such configuration property" in by_key["kafka.client.no.such.property"]
    assert "Invalid value" in by_key["kafka.client.fetch.wait.max.ms"]
    assert "sideways" in by_key["kafka.client.auto.offset.reset"]


def test_a_constraint_between_keys_names_both():
    # each is fine alone (with librdkafka's defaults), not together
    options = {"message.max.bytes": 5_000_000, "fetch.max.bytes": 2_000_000}
    assert check_client_options({"message.max.bytes": 5_000_000}) == []
    assert check_client_options({"fetch.max.bytes": 2_000_000}) == []
    problems = check_client_options(options)
    assert sorted(p.split(":", 1)[0] for p in problems) == [
        "kafka.client.fetch.max.bytes",
        "kafka.client.message.max.bytes",
    ]


def test_a_key_is_not_blamed_for_a_default_another_key_changes():
    # alone, max.poll.interval.ms 10 s breaks ">= session.timeout.ms" (45 s by default)
    assert check_client_options({"session.timeout.ms": 6000, "max.poll.interval.ms": 10000}) == []
    [problem] = check_client_options({"max.poll.interval.ms": 10000})
    assert problem.startswith("kafka.client.max.poll.interval.ms: ")
    assert "session.timeout.ms" in problem
    # a constraint on one key and a default is named on that key
    [problem] = check_client_options({"fetch.max.bytes": 1000})
    assert problem.startswith("kafka.client.fetch.max.bytes: ")


def test_checking_writes_nothing_to_stderr(capfd):
    check_client_options({"no.such.property": 1, "fetch.wait.max.ms": 10})
    assert capfd.readouterr().err == ""


def test_missing_extra_message():
    assert MISSING == (
        "kafka.library: confluent needs the extra driftwatch[fast] (pip install 'driftwatch[fast]')"
    )


# -- the configuration --------------------------------------------------------------------


def test_defaults_fetch_two_maximal_records_and_do_not_idle():
    d = _defaults(1_048_576)
    assert d["auto.offset.reset"] == "earliest"
    assert d["max.partition.fetch.bytes"] >= 2 * 1_048_576 + 65_536
    assert "fetch.max.bytes" not in d  # librdkafka's 50 MiB covers it
    assert d["fetch.wait.max.ms"] <= 50
    assert d["fetch.queue.backoff.ms"] <= 50
    big = _defaults(40 * 1_048_576)
    assert big["fetch.max.bytes"] >= big["max.partition.fetch.bytes"] >= 80 * 1_048_576


def test_client_options_override_defaults_but_never_what_driftwatch_sets():
    conf = _config(
        ["a:9092", "b:9092"],
        "grp",
        {"fetch.wait.max.ms": 100, "enable.auto.commit": True, "group.id": "other"},
        1_048_576,
    )
    assert conf["fetch.wait.max.ms"] == 100
    assert conf["bootstrap.servers"] == "a:9092,b:9092"
    assert conf["group.id"] == "grp"
    assert conf["enable.auto.commit"] is False
    assert conf["enable.auto.offset.store"] is False


# -- columns from messages ------------------------------------------------------------------


@pytest.fixture
def src() -> Iterator[ConfluentSource]:
    """A source whose broker does not exist: only its bookkeeping is exercised."""
    s = ConfluentSource(["127.0.0.1:1"], "g", ["t"], {"session.timeout.ms": 7000})
    try:
        yield s
    finally:
        s.close()


def msg(p: int, o: int, ts: tuple[int, int] = (1, 1_700_000_000_000), topic: str = "t") -> Message:
    return Message(
        topic=topic, partition=p, offset=o, key=b"k%d" % o, value=b"v%d" % o, timestamp=ts
    )


def test_one_batch_per_run_of_a_partition_in_order(src):
    batches = src._batches([msg(0, 10), msg(0, 11), msg(1, 3), msg(1, 4), msg(0, 12)])
    assert [(b.topic, b.partition, b.offsets) for b in batches] == [
        ("t", 0, [10, 11]),
        ("t", 1, [3, 4]),
        ("t", 0, [12]),
    ]
    assert batches[1].keys == [b"k3", b"k4"]
    assert batches[1].values == [b"v3", b"v4"]
    assert src.position("t", 0) == 13
    assert src.position("t", 1) == 5


def test_single_partition_fast_path(src):
    [b] = src._batches([msg(2, o) for o in range(100, 600)])
    assert (b.partition, b.offsets[0], b.offsets[-1], len(b)) == (2, 100, 599, 500)
    assert b.values[7] == b"v107"


def test_timestamps_in_seconds_and_a_missing_one_falls_back_to_the_wall_clock(src):
    [b] = src._batches(
        [
            msg(0, 0, (1, 1_700_000_000_250)),  # CreateTime
            msg(0, 1, (2, 1_700_000_001_000)),  # LogAppendTime
            msg(0, 2, (0, -1)),  # NOT_AVAILABLE
            msg(0, 3, (0, 123)),  # NOT_AVAILABLE, whatever the number
        ]
    )
    assert b.timestamps == [1_700_000_000.25, 1_700_000_001.0, -0.001, -0.001]


def test_error_messages_are_skipped_never_raised(src, caplog):
    eof = Message(topic="t", partition=0, offset=3, error=KafkaError(KafkaError._PARTITION_EOF))
    bad = Message(
        topic="t", partition=1, offset=-1, error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    )
    with caplog.at_level(logging.WARNING, logger="driftwatch.sources.confluent"):
        batches = src._batches([msg(0, 1), msg(0, 2), eof, bad, msg(1, 9)])
        assert src._batches([bad, bad, eof]) == []
    assert [(b.partition, b.offsets) for b in batches] == [(0, [1, 2]), (1, [9])]
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1  # rate-limited; the end-of-partition event is not an error
    assert "t/1" in logged[0]


def test_two_topics_are_separate_runs():
    s = ConfluentSource(["127.0.0.1:1"], "g", ["a", "b"], {})
    try:
        batches = s._batches(
            [msg(0, 1, topic="a"), msg(0, 7, topic="b"), msg(0, 8, topic="b"), msg(0, 2, topic="a")]
        )
        assert [(b.topic, b.offsets) for b in batches] == [("a", [1]), ("b", [7, 8]), ("a", [2])]
    finally:
        s.close()


def test_records_of_a_partition_with_a_pending_seek_are_dropped(src):
    src._assigned |= {("t", 0), ("t", 1)}
    src._pending[("t", 1)] = 40
    src._next[("t", 1)] = 40
    batches = src._batches([msg(0, 5), msg(1, 2), msg(1, 3)])
    assert [(b.partition, b.offsets) for b in batches] == [(0, [5])]
    assert src._batches([msg(1, 4)]) == []
    assert src.position("t", 1) == 40


def test_rebalances_oldest_first_then_empty(src):
    src._on_assign(None, [TopicPartition("t", 0), TopicPartition("t", 1)])
    src._on_revoke(None, [TopicPartition("t", 1)])
    src._on_lost(None, [TopicPartition("t", 0)])
    src._on_assign(None, [TopicPartition("t", 2)])
    assert src.rebalances() == [
        ("assigned", frozenset({("t", 0), ("t", 1)})),
        ("revoked", frozenset({("t", 1)})),
        ("revoked", frozenset({("t", 0)})),
        ("assigned", frozenset({("t", 2)})),
    ]
    assert src.rebalances() == []


def test_a_reassigned_partition_forgets_its_old_position(src):
    src._on_assign(None, [TopicPartition("t", 0)])
    src._batches([msg(0, 5)])
    assert src.position("t", 0) == 6
    src._on_revoke(None, [TopicPartition("t", 0)])
    src._on_assign(None, [TopicPartition("t", 0)])
    assert ("t", 0) not in src._next  # resolved from the committed offset again


def test_seek_of_a_partition_not_assigned_is_ignored(src, caplog):
    with caplog.at_level(logging.WARNING, logger="driftwatch.sources.confluent"):
        src.seek("t", 5, 100)
    assert "not assigned" in caplog.text
    assert ("t", 5) not in src._next and ("t", 5) not in src._pending


def test_contact_age_from_statistics(src):
    assert src.broker_contact_age() is None
    assert src.session_timeout_seconds == 7.0
    stats = {
        "brokers": {
            "b:9092/1": {"nodeid": 1, "rxidle": 4_000_000},
            "GroupCoordinator": {"nodeid": -1, "rxidle": 1_500_000},
            "b:9092/bootstrap": {"nodeid": -1, "rxidle": -1},
        }
    }
    src._on_stats(orjson.dumps(stats).decode())
    age = src.broker_contact_age()
    assert age is not None and 1.5 <= age < 2.5
    src._on_stats("not json")  # ignored
    src._batches([msg(0, 1)])
    age = src.broker_contact_age()
    assert age is not None and age < 0.5


def test_commit_of_nothing_succeeds_and_close_never_raises(src):
    assert src.commit({}) is True
    started = time.monotonic()
    src.close()
    src.close()  # twice: logged, not raised
    assert time.monotonic() - started < 5
