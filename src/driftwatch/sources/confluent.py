"""The librdkafka consumer source (``kafka.library: confluent``, extra ``driftwatch[fast]``).

:class:`ConfluentSource` has the interface and guarantees of
:class:`driftwatch.sources.kafka.KafkaSource` on top of confluent-kafka (librdkafka):
manual commits only, restore + seek on assignment, records handed over as columns.
Only this module imports ``confluent_kafka``, and nothing imports this module unless
``kafka.library: confluent`` is configured.

Threading: the consumer belongs to the poll-loop thread. librdkafka fetches on its own
threads, but every callback (rebalance, statistics, errors, logs) is served inside
:meth:`ConfluentSource.poll` on the calling thread, so the rebalance changes need no lock.
:meth:`ConfluentSource.broker_contact_age` may be called from any thread (it only reads
two floats).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any, cast

import orjson

from driftwatch.sources.base import Headers, RecordBatch

#: The error when the optional dependency is missing (``import`` of this module fails).
MISSING = (
    "kafka.library: confluent needs the extra driftwatch[fast] (pip install 'driftwatch[fast]')"
)

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(MISSING, name="confluent_kafka") from exc


log = logging.getLogger(__name__)
#: librdkafka's own log lines (served on the poll thread), instead of raw stderr lines.
_rdkafka_log = logging.getLogger("driftwatch.librdkafka")

TP = tuple[str, int]

#: Options driftwatch sets itself; ``kafka.client`` may not override them. Aliases count:
#: ``metadata.broker.list`` is ``bootstrap.servers``, ``auto.commit.enable`` is
#: ``enable.auto.commit``. The callbacks are ours (``stats_cb`` feeds
#: :meth:`ConfluentSource.broker_contact_age`).
_RESERVED = frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "group.id",
        "enable.auto.commit",
        "auto.commit.enable",
        "enable.auto.offset.store",
        "key.deserializer",
        "value.deserializer",
        "stats_cb",
        "error_cb",
        "on_commit",
        "logger",
    }
)

#: librdkafka's own default ``fetch.max.bytes`` (50 MiB): raised only when a maximal
#: record needs more.
_FETCH_MAX_BYTES = 52_428_800


def _defaults(max_record_bytes: int) -> dict[str, Any]:
    """The consumer defaults driftwatch sets; every one may be overridden in ``kafka.client``."""
    per_partition = max(1_048_576, 2 * max_record_bytes + 65_536)
    defaults: dict[str, Any] = {
        # A new group reads the topic from its start (kafka-python's default here too):
        # a monitor that skips the backlog would start with an empty, misleading window.
        "auto.offset.reset": "earliest",
        # At least two maximal records (plus batch overhead) per partition and fetch, so an
        # oversized record, which the pipeline dead-letters, never wedges its partition
        # (librdkafka would otherwise grow the fetch size step by step).
        "max.partition.fetch.bytes": per_partition,
        # How long the broker may hold a fetch that has less than fetch.min.bytes (1 byte)
        # to return. Kafka answers as soon as data arrives, but some brokers (Tansu, the
        # demo/test broker) let the wait run out when a fetch starts at the end of the log,
        # so a caught-up consumer sees new records only every fetch.wait.max.ms: measured
        # on Tansu, produce-to-poll latency 163 ms (median) at librdkafka's 500 ms, 3 ms at
        # 10 ms. The cost of a small value is an idle consumer asking every 10 ms: cheap.
        "fetch.wait.max.ms": 10,
        # How long the fetcher pauses once the local queue holds queued.min.messages
        # (100,000 per partition, kept) or queued.max.messages.kbytes (64 MiB for the whole
        # consumer, kept: enough to ride out a slow poll turn). At librdkafka's 1 s the
        # poll loop, slower than the fetcher, drains the queue in a fraction of that second
        # and then idles the rest of it waiting for the next fetch: a catch-up after
        # downtime crawls (measured on Tansu, poll + JSON decode of ~620-byte records:
        # ~245k msg/s at 1 s, ~530k msg/s at 10 ms). 10 ms refills the queue in time.
        "fetch.queue.backoff.ms": 10,
        # Statistics every second: their per-broker ``rxidle`` (time since the last bytes
        # received) is what broker_contact_age() reports between records. Parsing one
        # statistics document a second costs ~0.1 ms.
        "statistics.interval.ms": 1000,
        # Names the consumer in broker logs and quotas.
        "client.id": "driftwatch",
        # End-of-partition events are not needed (and would be skipped anyway).
        "enable.partition.eof": False,
    }
    if per_partition > _FETCH_MAX_BYTES:  # fetch.max.bytes must cover one partition's fetch
        defaults["fetch.max.bytes"] = per_partition
    return defaults


def _config(
    bootstrap_servers: list[str] | None,
    group_id: str,
    client_options: Mapping[str, Any],
    max_record_bytes: int,
) -> dict[str, Any]:
    """The full librdkafka configuration: defaults, then ``kafka.client``, then ours."""
    conf = _defaults(max_record_bytes)
    conf.update({k: v for k, v in client_options.items() if k not in _RESERVED})
    if bootstrap_servers is not None:
        conf["bootstrap.servers"] = ",".join(bootstrap_servers)
    conf["group.id"] = group_id
    # Offsets are committed by driftwatch only, explicitly, after a durable checkpoint.
    conf["enable.auto.commit"] = False
    conf["enable.auto.offset.store"] = False
    return conf


def _quiet_logger() -> logging.Logger:
    quiet = logging.getLogger("driftwatch.librdkafka.check")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return quiet


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return str(exc.args[0].str())
    return str(exc)


#: How librdkafka's final configuration check (constraints between properties) begins.
_FINAL_CHECK = "Failed to create consumer:"


def _construction_error(conf: dict[str, Any]) -> str | None:
    """Why librdkafka refuses ``conf`` (None if it accepts it). Builds a throwaway consumer:
    no broker address, so nothing is contacted; its log lines are discarded."""
    try:
        consumer = Consumer({**conf, "logger": _quiet_logger()})
    except Exception as exc:
        return _error_text(exc)
    with contextlib.suppress(Exception):  # a consumer that never connected: nothing to say
        consumer.close()
    return None


def check_client_options(options: Mapping[str, Any]) -> list[str]:
    """Problems with ``kafka.client`` keys for librdkafka, each naming the key path.

    Validated by librdkafka itself, constructing throwaway consumers (no broker contact).
    First each key on its own, on top of driftwatch's defaults, so every unknown property
    or invalid value is named; an error of the final configuration check ("Failed to
    create consumer: ...") is not held against a key alone, since it may hold only against
    a default another key changes (``max.poll.interval.ms`` >= ``session.timeout.ms``).
    Then all the keys together: a constraint they break is reported against the keys it
    names (every key, if it names none of them).
    """
    problems: list[str] = []
    valid: dict[str, Any] = {}
    for key, value in options.items():
        if key in _RESERVED:
            problems.append(f"kafka.client.{key}: set by driftwatch; use the kafka.* key instead")
            continue
        why = _construction_error(_config(None, "driftwatch-check", {key: value}, 1_048_576))
        if why is not None and not why.startswith(_FINAL_CHECK):
            problems.append(f"kafka.client.{key}: {why}")
        else:
            valid[key] = value
    if valid:
        why = _construction_error(_config(None, "driftwatch-check", valid, 1_048_576))
        if why is not None:
            named = [k for k in valid if f"`{k}`" in why or f'"{k}"' in why] or list(valid)
            problems.extend(f"kafka.client.{k}: {why}" for k in named)
    return problems


class _Throttle:
    """Logs a warning at most once per ``interval`` seconds per kind, counting the rest."""

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warn(self, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -math.inf) < self.interval:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        self._last[kind] = now
        quiet = self._quiet.pop(kind, 0)
        if quiet:
            msg += " (%d similar message(s) not logged)"
            args = (*args, quiet)
        log.warning(msg, *args)


# Unbound C methods: ``map`` over them builds a column without a Python frame per message.
_error = Message.error
_topic = Message.topic
_partition = Message.partition
_offset = Message.offset
_key = Message.key
_value = Message.value
_headers = Message.headers
_timestamp = Message.timestamp

#: How long :meth:`ConfluentSource.seek` keeps retrying a partition that is assigned but
#: not fetching yet, before leaving the seek pending for the next polls.
_SEEK_WAIT = 1.0
#: Bound on resolving a position (committed offset, then watermarks).
_RESOLVE_TIMEOUT = 15.0
#: Bound on :meth:`ConfluentSource.close`.
_CLOSE_TIMEOUT = 10.0


class ConfluentSource:
    """Consumes raw records from the subscribed topics; commits offsets on request.

    Same contract as :class:`driftwatch.sources.kafka.KafkaSource`.

    Seeks. librdkafka refuses ``seek()`` with ``_STATE`` ("Erroneous state") on a
    partition that is assigned but whose fetcher has not started yet: after an assignment
    it first fetches the committed offset from the group coordinator, and the partition
    is seekable only once that answer is in (librdkafka ``rd_kafka_toppar_seek``;
    confluentinc/librdkafka#3959, confluent-kafka-dotnet#1061/#1303). :meth:`seek`
    therefore retries for up to a second (the window is typically about a millisecond)
    and, if the partition is still not seekable, keeps the seek pending: every
    :meth:`poll` retries it first and drops the partition's records until it succeeds.
    A successful seek bumps the partition's op version in librdkafka, which discards
    every message fetched before it (also those already queued locally), so no record
    from before the seek offset is ever returned after :meth:`seek`.
    """

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
        self.with_headers = with_headers
        self.topics = topics
        self._max = max(1, int(max_poll_records))
        conf = _config(bootstrap_servers, group_id, client_options, max_record_bytes)
        self._session_ms = float(conf.get("session.timeout.ms", 45_000))
        self._reset = str(conf.get("auto.offset.reset", "largest")).lower()
        conf["stats_cb"] = self._on_stats
        conf["error_cb"] = self._on_error
        conf["on_commit"] = self._on_commit
        conf["logger"] = _rdkafka_log
        self._changes: list[tuple[str, frozenset[TP]]] = []
        self._assigned: set[TP] = set()
        #: next offset per partition as far as driftwatch knows (records returned, seeks)
        self._next: dict[TP, int] = {}
        #: seeks librdkafka refused so far (partition not fetching yet), retried by poll
        self._pending: dict[TP, int] = {}
        self._seek_deadline: float | None = None  # seek retry budget until the next poll
        self._last_records = -math.inf
        self._last_contact = -math.inf  # monotonic time of the last bytes from a broker
        self._throttle = _Throttle()
        self._commits_in_flight = 0  # asynchronous commits without an outcome yet
        self._commit_stalled = False  # one was not confirmed in time and is still out
        # A single named topic: every record's topic is topics[0], no need to read it.
        self._one_topic = topics[0] if len(topics) == 1 and not topics[0].startswith("^") else None
        self._consumer = Consumer(conf)
        self._consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    # -- callbacks (served inside poll/consume/close, on the calling thread) ---------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        parts = frozenset((tp.topic, tp.partition) for tp in partitions)
        for tp in parts:  # a fresh assignment starts at the committed offset
            self._next.pop(tp, None)
            self._pending.pop(tp, None)
        self._assigned |= parts
        self._changes.append(("assigned", parts))
        # confluent-kafka (in)crementally assigns ``partitions`` when this returns.

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        parts = frozenset((tp.topic, tp.partition) for tp in partitions)
        for tp in parts:
            self._next.pop(tp, None)
            self._pending.pop(tp, None)
        self._assigned -= parts
        self._changes.append(("revoked", parts))

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_revoke(consumer, partitions)  # lost (session expired): revoked, for us

    def _on_stats(self, raw: str) -> None:
        """librdkafka statistics: the freshest ``rxidle`` (µs since the last bytes received
        from that broker connection; -1 before any) over all broker connections, including
        the group coordinator's (heartbeats every heartbeat.interval.ms)."""
        now = time.monotonic()
        try:
            brokers = orjson.loads(raw).get("brokers", {})
            idle = [
                b["rxidle"]
                for b in brokers.values()
                if isinstance(b.get("rxidle"), int) and b["rxidle"] >= 0
            ]
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return
        if idle:
            self._last_contact = max(self._last_contact, now - min(idle) / 1e6)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("Kafka consumer: fatal error: %s", err.str())
        else:
            self._throttle.warn(f"client:{err.code()}", "Kafka consumer: %s", err.str())

    # -- KafkaSource interface -------------------------------------------------------------

    def broker_contact_age(self) -> float | None:
        """Seconds since the consumer last heard from the broker (None before the first
        contact): the later of the last records received and the last bytes received on
        any broker connection (fetch responses, group heartbeats, metadata), as reported by
        librdkafka's statistics every ``statistics.interval.ms`` (1 s by default). Those
        statistics are served by :meth:`poll`, so while the poll loop is blocked elsewhere
        the age grows from the last statistics seen. With ``statistics.interval.ms: 0``
        only records count."""
        last = max(self._last_records, self._last_contact)
        return None if math.isinf(last) else max(0.0, time.monotonic() - last)

    @property
    def session_timeout_seconds(self) -> float:
        return self._session_ms / 1000.0

    def poll(self, timeout_seconds: float) -> list[RecordBatch]:
        """One batch per run of a topic-partition, as columns (no object per record).

        Returns what is queued at once; if nothing is, waits up to ``timeout_seconds`` for
        the first record and returns it with whatever arrived with it."""
        self._seek_deadline = None
        if self._pending:
            self._retry_seeks()
        consumer = self._consumer
        try:
            msgs = consumer.consume(self._max, 0)
            if not msgs:
                first = consumer.poll(max(0.0, timeout_seconds))
                if first is None:
                    return []
                msgs = [first]
                if self._max > 1:
                    msgs += consumer.consume(self._max - 1, 0)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise
            self._throttle.warn("consume", "Kafka consumer: %s", _error_text(exc))
            return []
        return self._batches(msgs)

    def _batches(self, msgs: list[Message]) -> list[RecordBatch]:
        n = len(msgs)
        errors = list(map(_error, msgs))
        # any(): KafkaError is always truthy. Not errors.count(None): comparing a
        # KafkaError with None raises inside list.count (SystemError, confluent-kafka 2.16).
        if any(errors):
            msgs = self._skip_errors(msgs, errors)
            n = len(msgs)
            if not n:
                return []
        self._last_records = time.monotonic()
        parts = list(map(_partition, msgs))
        one_topic = self._one_topic
        topics = None if one_topic is not None else list(map(_topic, msgs))
        p0 = parts[0]
        t0 = one_topic if topics is None else topics[0]
        if (
            parts.count(p0) == n
            and (topics is None or topics.count(t0) == n)
            and not (self._pending and (t0, p0) in self._pending)
        ):
            return [self._batch(cast(str, t0), cast(int, p0), msgs)]
        out: list[RecordBatch] = []
        start = 0
        for i in range(1, n + 1):
            if (
                i < n
                and parts[i] == parts[start]
                and (topics is None or topics[i] == topics[start])
            ):
                continue
            t = one_topic if topics is None else topics[start]
            tp = (cast(str, t), cast(int, parts[start]))
            if tp not in self._pending:  # records from before a pending seek: dropped
                out.append(self._batch(tp[0], tp[1], msgs[start:i]))
            start = i
        return out

    def _batch(self, topic: str, partition: int, msgs: list[Message]) -> RecordBatch:
        offsets = cast("list[int]", list(map(_offset, msgs)))
        batch = RecordBatch(
            topic,
            partition,
            offsets,
            list(map(_key, msgs)),
            list(map(_value, msgs)),
            # milliseconds -> seconds; timestamp type 0 (NOT_AVAILABLE) -> -1 ms, like
            # kafka-python, so the decoder falls back to the wall clock
            [ts / 1000.0 if kind else -0.001 for kind, ts in map(_timestamp, msgs)],
            cast("list[Headers]", list(map(_headers, msgs))) if self.with_headers else None,
        )
        self._next[(topic, partition)] = offsets[-1] + 1
        return batch

    def _skip_errors(self, msgs: list[Message], errors: list[KafkaError | None]) -> list[Message]:
        kept = []
        for m, err in zip(msgs, errors, strict=True):
            if err is None:
                kept.append(m)
            elif err.code() != KafkaError._PARTITION_EOF:
                where = f"{m.topic()}/{m.partition()}" if m.topic() else "consumer"
                self._throttle.warn(
                    f"record:{err.code()}", "Kafka consumer (%s): %s", where, err.str()
                )
        return kept

    def partitions(self, topic: str) -> int | None:
        """How many partitions ``topic`` has (None while the broker does not know it)."""
        try:
            meta = self._consumer.list_topics(topic, timeout=5.0).topics.get(topic)
        except KafkaException as exc:
            self._throttle.warn("metadata", "topic %s metadata: %s", topic, _error_text(exc))
            return None
        if meta is None or meta.error is not None or not meta.partitions:
            return None
        return len(meta.partitions)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """The next :meth:`poll` returns ``topic/partition`` records from ``offset`` on (or
        none of them while librdkafka cannot seek yet; never any from before it)."""
        tp = (topic, partition)
        if tp not in self._assigned:
            log.warning(
                "seek %s/%d to %d: partition not assigned; ignored", topic, partition, offset
            )
            return
        self._next[tp] = offset
        if self._seek_deadline is None:  # one retry budget per poll turn, for all seeks
            self._seek_deadline = time.monotonic() + _SEEK_WAIT
        while True:
            if self._try_seek(tp, offset):
                self._pending.pop(tp, None)
                return
            if time.monotonic() >= self._seek_deadline:
                break
            time.sleep(0.002)
        self._pending[tp] = offset
        log.info(
            "seek %s/%d to %d: partition not fetching yet; applied by a later poll",
            topic,
            partition,
            offset,
        )

    def _try_seek(self, tp: TP, offset: int) -> bool:
        try:
            self._consumer.seek(TopicPartition(tp[0], tp[1], offset))
            return True
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code not in (KafkaError._STATE, KafkaError._PREV_IN_PROGRESS):
                self._throttle.warn("seek", "seek %s/%d: %s", tp[0], tp[1], _error_text(exc))
            return False

    def _retry_seeks(self) -> None:
        for tp, offset in list(self._pending.items()):
            if self._try_seek(tp, offset):
                del self._pending[tp]

    def position(self, topic: str, partition: int) -> int:
        """The offset of the next record :meth:`poll` returns for this partition: after the
        last record returned or the last seek; before either, the committed offset, else
        the start or end of the partition per ``auto.offset.reset`` (resolved with the
        broker, within about 15 s, else TimeoutError)."""
        tp = (topic, partition)
        known = self._next.get(tp)
        if known is not None:
            return known
        deadline = time.monotonic() + _RESOLVE_TIMEOUT
        part = TopicPartition(topic, partition)
        problem = "no answer"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"position of {topic}/{partition}: {problem}")
            try:
                [committed] = self._consumer.committed([part], timeout=min(left, 5.0))
                if committed.error is None and committed.offset >= 0:
                    return int(committed.offset)
                if committed.error is None:  # nothing committed: auto.offset.reset
                    low, high = self._consumer.get_watermark_offsets(
                        part, timeout=max(0.1, min(deadline - time.monotonic(), 5.0))
                    )
                    if self._reset in ("latest", "largest", "end"):
                        if high >= 0:
                            return int(high)
                    elif low >= 0:
                        return int(low)
                    problem = f"watermarks ({low}, {high})"
                else:
                    problem = str(committed.error.str())
            except KafkaException as exc:
                problem = _error_text(exc)
            time.sleep(0.05)

    def rebalances(self) -> list[tuple[str, frozenset[TP]]]:
        """Assignment changes since the last call, oldest first."""
        changes, self._changes = self._changes, []
        return changes

    def commit(self, offsets: Mapping[TP, int], timeout_seconds: float = 2.0) -> bool:
        """Commit ``next offset`` per partition; False (logged) if the broker refused it or
        did not confirm it within ``timeout_seconds``. Never raises.

        Bounded without a thread: librdkafka's synchronous commit has no timeout (with the
        coordinator unreachable it waits up to ``socket.timeout.ms``, 60 s), and
        confluent-kafka serializes calls on one consumer, so a commit blocked on another
        thread would block :meth:`poll` too. Instead the commit is sent asynchronously and
        confirmed by reading the group's committed offsets back (``committed()``, bounded
        by the timeout): the coordinator answers requests of one connection in order, so
        the read reflects the commit. The commit's own outcome is logged when
        :meth:`poll` serves it. After a commit that was not confirmed in time, later ones
        return False at once until the broker has answered it (no pile-up during an
        outage). A commit skipped is harmless: restores seek to the checkpoint's offsets,
        and the next checkpoint commits newer ones."""
        if not offsets:
            return True
        if self._commit_stalled:
            self._throttle.warn(
                "commit-stalled",
                "offset commit skipped: the previous one is still waiting for the broker",
            )
            return False
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        wanted = {(t, p): int(o) for (t, p), o in offsets.items()}
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in wanted.items()],
                asynchronous=True,
            )
            self._commits_in_flight += 1
            committed = self._consumer.committed(
                [TopicPartition(t, p) for t, p in wanted],
                timeout=max(0.001, deadline - time.monotonic()),
            )
        except KafkaException as exc:
            if self._commits_in_flight:
                self._commit_stalled = True
            log.warning("offset commit failed: %s", _error_text(exc))
            return False
        except Exception as exc:  # e.g. RuntimeError once closed: never into the caller
            log.warning("offset commit failed: %s", exc)
            return False
        wrong = [
            f"{tp.topic}/{tp.partition} at {tp.offset}"
            + (f" ({tp.error.str()})" if tp.error is not None else "")
            for tp in committed
            if tp.error is not None or wanted.get((tp.topic, tp.partition)) != tp.offset
        ]
        if wrong:
            log.warning(
                "offset commit failed: the group's committed offsets are %s", ", ".join(wrong)
            )
            return False
        return True

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The outcome of an asynchronous commit (served by :meth:`poll`)."""
        self._commits_in_flight = max(0, self._commits_in_flight - 1)
        if not self._commits_in_flight:
            self._commit_stalled = False
        failed = [f"{tp.topic}/{tp.partition}: {tp.error.str()}" for tp in partitions if tp.error]
        if err is not None or failed:
            self._throttle.warn(
                "commit-result",
                "offset commit failed: %s",
                "; ".join(failed) or (err.str() if err is not None else ""),
            )

    def close(self) -> None:
        """Leave the group and close the consumer; never raises, returns within about
        ``_CLOSE_TIMEOUT`` (10 s). librdkafka's close waits for in-flight offset commits,
        and with a broker that accepts connections but does not answer it retries them
        forever (confluentinc/librdkafka#3740): past the bound the close is left running on
        its (daemon) thread, so a shutdown during an outage still ends."""
        done = threading.Event()

        def run() -> None:
            try:
                self._consumer.close()
            except Exception as exc:  # closing must not turn a clean shutdown into a crash
                log.warning("closing the consumer: %s", exc)
            finally:
                done.set()

        threading.Thread(target=run, name="driftwatch-consumer-close", daemon=True).start()
        if not done.wait(_CLOSE_TIMEOUT):
            log.warning(
                "closing the consumer: the broker did not answer within %.0fs; not waiting",
                _CLOSE_TIMEOUT,
            )
