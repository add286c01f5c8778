"""The outbox: all-or-nothing writes that report duplicates and raise rather than lose,
and a sender that survives an outbox it cannot write."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

import pytest

from driftwatch.errors import OutboxError
from driftwatch.sinks.outbox import Outbox
from driftwatch.sinks.webhook import WebhookSender, WebhookTarget
from tests.helpers import WebhookServer, wait_for

BODY: dict[str, Any] = {
    "id": "n-1",
    "type": "drift.detected",
    "model": "m",
    "rule": "feature_drift",
    "occurred_at": "2026-11-22T06:00:00Z",
    "window": {"events": 10, "labeled_events": 0},
    "drifted_features": [],
    "performance": None,
}


def body(i: str) -> bytes:
    return json.dumps(dict(BODY, id=i)).encode()


class FailingConnection:
    """Proxies a sqlite3 connection; statements matching ``fail_on`` raise like a full disk."""

    def __init__(self, db: sqlite3.Connection, fail_on: str) -> None:
        self._db = db
        self.fail_on = fail_on

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.fail_on and self.fail_on in sql:
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_add_all_writes_everything_and_reports_duplicates(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    now = time.time()
    assert box.add_all([("a", "w1", body("a")), ("a", "w2", body("a"))], now) == []
    dups = box.add_all([("a", "w1", body("a")), ("b", "w1", body("b")), ("a", "w2", b"x")], now)
    assert dups == [("a", "w1"), ("a", "w2")]
    assert sorted((i.id, i.webhook) for i in box.listing()) == [
        ("a", "w1"),
        ("a", "w2"),
        ("b", "w1"),
    ]
    # a duplicate never overwrites the stored notification
    assert {i.webhook: i.body for i in box.listing() if i.id == "a"}["w2"] == body("a")
    # a delivered tombstone is still a duplicate: the same firing is not sent twice
    box.delivered("b", "w1")
    assert box.add_all([("b", "w1", body("b"))], now) == [("b", "w1")]
    assert box.add("c", "w1", body("c"), now) is True
    assert box.add("c", "w1", body("c"), now) is False


def test_add_all_is_all_or_nothing_when_the_commit_fails(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    real = box._db
    box._db = FailingConnection(real, "COMMIT")  # type: ignore[assignment]
    with pytest.raises(OutboxError, match="disk is full"):
        box.add_all([("a", "w", body("a")), ("b", "w", body("b"))], time.time())
    box._db = real
    assert box.listing() == []
    # and the connection is usable again (the transaction was rolled back, not left open)
    assert box.add_all([("a", "w", body("a"))], time.time()) == []
    assert [i.id for i in box.listing()] == ["a"]


def test_add_all_is_all_or_nothing_when_a_row_fails(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    with pytest.raises(OutboxError):
        box.add_all([("a", "w", body("a")), ("b", "w", None)], time.time())  # type: ignore[list-item]
    assert box.listing() == []


def test_add_all_raises_on_a_read_only_database(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    box._db.execute("PRAGMA query_only = ON")  # SQLite refuses every write, like a ro mount
    with pytest.raises(OutboxError, match="readonly"):
        box.add_all([("a", "w", body("a"))], time.time())
    with pytest.raises(OutboxError):
        box.add("a", "w", body("a"), time.time())
    box._db.execute("PRAGMA query_only = OFF")
    assert box.listing() == []


def test_add_all_raises_when_the_database_stays_locked(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", busy_timeout_seconds=0.2)
    other = sqlite3.connect(str(tmp_path / "o.sqlite3"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    started = time.monotonic()
    with pytest.raises(OutboxError, match="locked"):
        box.add_all([("a", "w", body("a"))], time.time())
    assert time.monotonic() - started < 5
    other.execute("ROLLBACK")
    assert box.add_all([("a", "w", body("a"))], time.time()) == []


def test_outbox_that_cannot_be_opened_is_an_outbox_error(tmp_path):
    (tmp_path / "o.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match=r"o\.sqlite3"):
        Outbox(tmp_path / "o.sqlite3")


def test_sender_survives_an_outbox_it_cannot_write_and_keeps_the_notification(tmp_path):
    """``delivered`` fails: the sender thread lives on, the notification stays pending (not
    lost) and is not re-sent while the outcome waits to be recorded; once the database
    works again the outcome is recorded."""
    outcomes: list[tuple[str, str]] = []
    with WebhookServer() as srv:
        box = Outbox(tmp_path / "o.sqlite3")
        target = WebhookTarget("retrain", srv.url, timeout_seconds=2.0)
        s = WebhookSender(box, {"retrain": target}, lambda w, o, _s: outcomes.append((w, o)))
        box.add("n-1", "retrain", body("n-1"), time.time())
        real = box._db
        box._db = FailingConnection(real, "UPDATE")  # type: ignore[assignment]
        s.start()
        s.wake()
        wait_for(lambda: outcomes, 5, interval=0.05, what="an attempt")
        time.sleep(1.5)  # several sender loops with the outbox still failing
        assert s._thread is not None and s._thread.is_alive()
        assert len(srv.requests) == 1  # delivered once; not re-sent in a loop
        [item] = box.listing()
        assert item.status == "pending"  # not lost
        box._db = real
        wait_for(lambda: box.listing() == [], 5, interval=0.05, what="the outcome recorded")
        s.stop()
        assert len(srv.requests) == 1
        assert outcomes == [("retrain", "success")]


def test_after_a_restart_an_unrecorded_delivery_is_sent_again(tmp_path):
    """The outcome could not be written before the process died: the notification is
    still pending and is sent again, with the same Idempotency-Key."""
    with WebhookServer() as srv:
        box = Outbox(tmp_path / "o.sqlite3")
        target = WebhookTarget("retrain", srv.url, timeout_seconds=2.0)
        s = WebhookSender(box, {"retrain": target}, lambda *_: None)
        box.add("n-1", "retrain", body("n-1"), time.time())
        real = box._db
        box._db = FailingConnection(real, "UPDATE")  # type: ignore[assignment]
        s.drain_once()
        box._db = real
        box.close()  # "crash": the sender's memory is gone
        again = Outbox(tmp_path / "o.sqlite3")
        s2 = WebhookSender(again, {"retrain": target}, lambda *_: None)
        s2.drain_once()
        assert [r["headers"]["Idempotency-Key"] for r in srv.requests] == ["n-1", "n-1"]
        assert again.listing() == []


def test_sender_loop_survives_a_failing_read(tmp_path):
    """``next_due_at`` / ``due`` raising (a locked or broken database) must not end the
    sender thread."""
    box = Outbox(tmp_path / "o.sqlite3")
    s = WebhookSender(box, {}, lambda *_: None)
    real = box._db
    box._db = FailingConnection(real, "SELECT")  # type: ignore[assignment]
    s.start()
    time.sleep(1.5)
    alive = s._thread is not None and s._thread.is_alive()
    box._db = real
    s.stop()
    assert alive


def test_concurrent_add_all_and_sender_writes_do_not_interleave(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    errors: list[BaseException] = []

    def writer(prefix: str) -> None:
        try:
            for i in range(50):
                box.add_all([(f"{prefix}{i}", "w1", b"{}"), (f"{prefix}{i}", "w2", b"{}")], 0.0)
                box.retry(f"{prefix}{i}", "w1", 1.0, "x")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert box.pending_counts() == {"w1": 150, "w2": 150}


def test_undelivered_counts_exactly_and_lists_the_oldest_pending_and_newest_failed(tmp_path):
    """Failed notifications are never deleted: after 100 of them the oldest pending ones
    must still be listed, and the counts must stay exact (what /status and the page show)."""
    box = Outbox(tmp_path / "o.sqlite3")
    for i in range(150):
        box.add(f"old{i}", "broken", b"{}", 1000.0 + i)
        box.failed(f"old{i}", "broken", "HTTP 400")
    for i in range(7):
        box.add(f"new{i}", "retrain", b"{}", 5000.0 + i)
    box.add("done", "retrain", b"{}", 6000.0)
    box.delivered("done", "retrain")
    u = box.undelivered(limit=100)
    assert (u.pending_count, u.failed_count) == (7, 150)
    assert [i.id for i in u.pending] == [f"new{i}" for i in range(7)]  # oldest first
    assert [i.id for i in u.failed] == [f"old{i}" for i in range(149, 49, -1)]  # newest first
    assert {i.status for i in u.failed} == {"failed"} and u.failed[0].last_error == "HTTP 400"
    assert box.counts() == {"pending": 7, "failed": 150, "delivered": 1}
    few = box.undelivered(limit=3)
    assert (few.pending_count, few.failed_count) == (7, 150)
    assert (len(few.pending), len(few.failed)) == (3, 3)
    assert len(box.listing(limit=100)) == 100  # unchanged: the oldest undelivered, any state
    empty = Outbox(tmp_path / "e.sqlite3").undelivered()
    assert (empty.pending_count, empty.failed_count, empty.pending, empty.failed) == (0, 0, [], [])
