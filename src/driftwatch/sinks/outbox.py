"""Durable outbox of webhook notifications (SQLite, in ``state.path``).

A notification is written here before the offsets of the events that caused it are
committed. Once delivered it becomes a ``delivered`` tombstone (its body dropped),
purged after ``keep_delivered_seconds``; while it is there, writing the same
notification again (ids are stable: the same firing re-derived after a restart) is a
no-op, so it is not sent twice. One that exhausts its attempts or age stays with
status ``failed`` for inspection.

Every method raises ``OutboxError`` when SQLite fails (a full disk, a read-only or
locked database): a write either happens whole or not at all, never silently.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from driftwatch.errors import OutboxError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT NOT NULL,
    webhook TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT,
    PRIMARY KEY (id, webhook)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (status, created_at);
CREATE TABLE IF NOT EXISTS alert_state (
    model TEXT PRIMARY KEY,
    lineage TEXT,
    state BLOB NOT NULL
);
"""

_COLUMNS = "id, webhook, body, created_at, attempts, next_attempt_at, status, last_error"


@dataclass(frozen=True)
class Pending:
    id: str
    webhook: str
    body: bytes
    created_at: float
    attempts: int
    next_attempt_at: float
    status: str
    last_error: str | None


@dataclass(frozen=True)
class Undelivered:
    """What ``/status`` shows of the outbox: exact counts, and a bounded list of each."""

    pending_count: int
    failed_count: int
    #: the oldest pending notifications, oldest first
    pending: list[Pending]
    #: the newest failed notifications, newest first
    failed: list[Pending]


class Outbox:
    def __init__(self, path: Path, busy_timeout_seconds: float = 5.0) -> None:
        """Open (or create) the outbox at ``path``; a write waits up to
        ``busy_timeout_seconds`` for another process's lock before failing."""
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path),
                timeout=busy_timeout_seconds,
                check_same_thread=False,
                isolation_level=None,
            )
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"{path}: cannot open the webhook outbox: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()
            raise OutboxError(f"{path}: cannot open the webhook outbox: {exc}") from exc

    @contextmanager
    def _using(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: cannot {what}: {exc}") from exc

    def add_all(
        self,
        items: Sequence[tuple[str, str, bytes]],
        now: float,
        alert_state: tuple[str, str | None, bytes] | None = None,
    ) -> list[tuple[str, str]]:
        """Store each ``(notification id, webhook, body)`` in one transaction, together with
        the ``(model, lineage, rule states)`` that produced them, if given.

        Returns the ``(id, webhook)`` pairs that were already there (pending, failed or
        a delivered tombstone), left untouched. On any error nothing is written and
        ``OutboxError`` is raised.
        """
        if not items and alert_state is None:
            return []
        with self._lock:
            db = self._db
            try:
                if db.in_transaction:  # left open by a failure that could not roll back
                    db.execute("ROLLBACK")
                db.execute("BEGIN IMMEDIATE")
                duplicates: list[tuple[str, str]] = []
                for notification_id, webhook, body in items:
                    cur = db.execute(
                        "INSERT INTO outbox (id, webhook, body, created_at, next_attempt_at)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id, webhook) DO NOTHING",
                        (notification_id, webhook, body, now, now),
                    )
                    if cur.rowcount != 1:
                        duplicates.append((notification_id, webhook))
                if alert_state is not None:
                    db.execute(
                        "INSERT INTO alert_state (model, lineage, state) VALUES (?, ?, ?)"
                        " ON CONFLICT (model) DO UPDATE SET lineage = excluded.lineage,"
                        " state = excluded.state",
                        alert_state,
                    )
                db.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                if isinstance(exc, Exception):
                    raise OutboxError(
                        f"{self.path}: cannot store {len(items)} notification(s): {exc}"
                    ) from exc
                raise
        return duplicates

    def alert_state(self, model: str) -> tuple[str | None, bytes] | None:
        """The ``(lineage, rule states)`` last stored with a model's notifications."""
        with self._using("read an alert state") as db:
            row = db.execute(
                "SELECT lineage, state FROM alert_state WHERE model = ?", (model,)
            ).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def add(self, notification_id: str, webhook: str, body: bytes, now: float) -> bool:
        """Store a notification for a webhook; False if it was already there."""
        return not self.add_all([(notification_id, webhook, body)], now)

    def due(self, now: float, limit: int = 100) -> list[Pending]:
        with self._using("read due notifications") as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, created_at LIMIT ?",
                (now, limit),
            ).fetchall()
        return [Pending(*r) for r in rows]

    def next_due_at(self) -> float | None:
        with self._using("read the next due time") as db:
            row = db.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def delivered(self, notification_id: str, webhook: str, now: float | None = None) -> None:
        with self._using("record a delivery") as db:
            db.execute(
                "UPDATE outbox SET status = 'delivered', body = x'', next_attempt_at = ?"
                " WHERE id = ? AND webhook = ?",
                (time.time() if now is None else now, notification_id, webhook),
            )

    def purge_delivered(self, older_than: float) -> int:
        """Forget delivered tombstones delivered before ``older_than`` (epoch seconds)."""
        with self._using("purge delivered notifications") as db:
            cur = db.execute(
                "DELETE FROM outbox WHERE status = 'delivered' AND next_attempt_at < ?",
                (older_than,),
            )
            return cur.rowcount

    def retry(self, notification_id: str, webhook: str, at: float, error: str) -> None:
        with self._using("schedule a retry") as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE id = ? AND webhook = ?",
                (at, error[:500], notification_id, webhook),
            )

    def failed(self, notification_id: str, webhook: str, error: str) -> None:
        with self._using("record a failure") as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, status = 'failed', last_error = ?"
                " WHERE id = ? AND webhook = ?",
                (error[:500], notification_id, webhook),
            )

    def listing(self, limit: int = 100) -> list[Pending]:
        with self._using("list notifications") as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE status != 'delivered'"
                " ORDER BY created_at LIMIT ?",
                (limit,),
            ).fetchall()
        return [Pending(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many notifications are in each state (``pending``, ``failed``, ``delivered``
        tombstones), exactly; a state with none is absent."""
        with self._using("count notifications") as db:
            rows = db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        return {s: int(n) for s, n in rows}

    def undelivered(self, limit: int = 100) -> Undelivered:
        """The exact number of pending and of failed notifications, the ``limit`` oldest
        pending ones (the next to be delivered) and the ``limit`` newest failed ones (failed
        ones are kept for inspection, never deleted: the oldest matter least), all read at
        once."""
        with self._using("list notifications") as db:
            counts = dict(
                db.execute(
                    "SELECT status, COUNT(*) FROM outbox WHERE status IN ('pending', 'failed')"
                    " GROUP BY status"
                ).fetchall()
            )
            pending = db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending'"
                " ORDER BY created_at, id, webhook LIMIT ?",
                (limit,),
            ).fetchall()
            failed = db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE status = 'failed'"
                " ORDER BY created_at DESC, id, webhook LIMIT ?",
                (limit,),
            ).fetchall()
        return Undelivered(
            int(counts.get("pending", 0)),
            int(counts.get("failed", 0)),
            [Pending(*r) for r in pending],
            [Pending(*r) for r in failed],
        )

    def pending_counts(self) -> dict[str, int]:
        with self._using("count pending notifications") as db:
            rows = db.execute(
                "SELECT webhook, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY webhook"
            ).fetchall()
        return {w: int(n) for w, n in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
