"""Durable outbox of webhook notifications (SQLite, in ``state.path``).

A notification is written here before the offsets of the events that caused it are
committed. Once delivered it becomes a ``delivered`` tombstone (its body dropped),
purged after ``keep_delivered_seconds``; while it is there, writing the same
notification again (ids are stable: the same firing re-derived after a restart) is a
no-op, so it is not sent twice. One that exhausts its attempts or age stays with
status ``failed`` for inspection.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

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


class Outbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def add(self, notification_id: str, webhook: str, body: bytes, now: float) -> bool:
        """Store a notification for a webhook; False if it was already there."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO outbox (id, webhook, body, created_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (notification_id, webhook, body, now, now),
            )
            return cur.rowcount == 1

    def due(self, now: float, limit: int = 100) -> list[Pending]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, created_at LIMIT ?",
                (now, limit),
            ).fetchall()
        return [Pending(*r) for r in rows]

    def next_due_at(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def delivered(self, notification_id: str, webhook: str, now: float | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET status = 'delivered', body = x'', next_attempt_at = ?"
                " WHERE id = ? AND webhook = ?",
                (time.time() if now is None else now, notification_id, webhook),
            )

    def purge_delivered(self, older_than: float) -> int:
        """Forget delivered tombstones delivered before ``older_than`` (epoch seconds)."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM outbox WHERE status = 'delivered' AND next_attempt_at < ?",
                (older_than,),
            )
            return cur.rowcount

    def retry(self, notification_id: str, webhook: str, at: float, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE id = ? AND webhook = ?",
                (at, error[:500], notification_id, webhook),
            )

    def failed(self, notification_id: str, webhook: str, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, status = 'failed', last_error = ?"
                " WHERE id = ? AND webhook = ?",
                (error[:500], notification_id, webhook),
            )

    def listing(self, limit: int = 100) -> list[Pending]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE status != 'delivered'"
                " ORDER BY created_at LIMIT ?",
                (limit,),
            ).fetchall()
        return [Pending(*r) for r in rows]

    def pending_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT webhook, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY webhook"
            ).fetchall()
        return {w: int(n) for w, n in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
