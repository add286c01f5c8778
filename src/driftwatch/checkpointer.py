"""The commit protocol, written down once: state is durable before its offsets are committed.

The :class:`Checkpointer` is its only owner. On the poll-loop thread:

1. The poll loop applies a batch of records to the windows and advances
   :class:`~driftwatch.partitions.Partitions`' positions (invalid records are counted and
   handed to the dead-letter producer).
2. Every ``checkpoint_interval_seconds`` (when the previous write has finished),
   :meth:`Checkpointer.tick`
   a. flushes the dead-letter producer, bounded in time; if any dead letter handed to it
      is not acknowledged, this checkpoint is skipped and retried at the next tick, so
      offsets are never committed past a record whose dead letter may be lost;
   b. copies the state of each owned partition that changed — windows, label joins,
      alert states with their notification lineage — with the next offsets it reflects
      (between two applies, so state and offsets agree);
   c. hands the copy to the checkpoint thread, which encodes and writes it durably
      (file: temp + fsync + rename + directory fsync; kafka: every chunk and then the
      manifest acknowledged by the state topic).
3. :meth:`Checkpointer.commit_durable` (each loop turn) commits the offsets the writer
   reported durable, for the partitions still assigned. A failed write commits nothing
   and makes the next checkpoint write every partition in full.
4. At shutdown, :meth:`Checkpointer.final` waits for the writer, commits, then captures,
   writes and commits once more, on the poll thread.
5. After a config reload changed the models, :meth:`Checkpointer.now` does step 2 at
   once and in full (every owned partition, on the poll thread, dead letters flushed
   first) and commits: the checkpoints hold the new layouts before anything else
   happens, so a restart with the new config restores them.

Notifications are not part of this: an alert edge reaches the SQLite outbox during
evaluation, in one fsynced transaction with the rule states that produced it, before any
checkpoint can contain those states; a restore takes the outbox's copy when it is newer.
A crash anywhere means restarting from the previous checkpoint: the records after it are
applied again exactly once on top of it, and an edge notified after that checkpoint is
known from the outbox, so it is neither sent again nor its id reused.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from driftwatch.partitions import TP, CheckpointJob, Partitions
from driftwatch.sources.base import drain

log = logging.getLogger(__name__)


class Committer(Protocol):
    def commit(self, offsets: dict[TP, int]) -> bool: ...


class Flushable(Protocol):
    def flush(self, timeout: float) -> bool: ...


class Checkpointer:
    """Owns steps 2-5 of the module docstring (poll-loop thread, plus one writer thread)."""

    def __init__(
        self,
        partitions: Partitions,
        source: Committer,
        interval_seconds: float,
        dead_letters: Flushable | None = None,
        dead_letter_flush_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.partitions = partitions
        self.source = source
        self.interval_seconds = interval_seconds
        self.dead_letters = dead_letters
        self.dead_letter_flush_seconds = dead_letter_flush_seconds
        self.clock = clock
        self._last = clock()
        self._thread: threading.Thread | None = None
        self._done: queue.SimpleQueue[dict[TP, int] | None] = queue.SimpleQueue()
        #: checkpoints skipped because dead letters were not acknowledged (for tests/logs)
        self.skipped = 0

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def tick(self) -> bool:
        """Step 2, when due and the writer is idle; True if a write was started."""
        if self.busy() or self.clock() - self._last < self.interval_seconds:
            return False
        self.commit_durable()  # a failed write is known before the next capture skips anything
        self._last = self.clock()
        if not self._dead_letters_durable():
            return False
        job = self.partitions.capture()
        self._thread = threading.Thread(
            target=self._write, args=(job,), name="driftwatch-checkpoint", daemon=True
        )
        self._thread.start()
        return True

    def _dead_letters_durable(self) -> bool:
        if self.dead_letters is None:
            return True
        if self.dead_letters.flush(self.dead_letter_flush_seconds):
            return True
        self.skipped += 1
        log.warning(
            "dead letters not acknowledged by the broker: checkpoint postponed, offsets "
            "not committed past them (retrying at the next checkpoint)"
        )
        return False

    def _write(self, job: CheckpointJob) -> None:
        try:
            self._done.put(job.write())
        except Exception:  # the offsets stay uncommitted; the next checkpoint retries
            log.exception("checkpoint write failed; offsets not committed")
            self._done.put(None)

    def wait(self) -> None:
        """Let a write in flight finish (before partitions are revoked: a late write of a
        partition's old state must not land after its new owner's)."""
        if self._thread is not None:
            self._thread.join()

    def commit_durable(self) -> None:
        """Step 3: commit what the writer made durable (poll thread)."""
        for offsets in drain(self._done):
            if offsets is None:
                self.partitions.forget_saved()
            else:
                self._commit(offsets)

    def _commit(self, offsets: dict[TP, int]) -> None:
        assignment = self.partitions.assignment
        self.source.commit({tp: o for tp, o in offsets.items() if tp in assignment})

    def set_interval(self, seconds: float) -> None:
        """A reloaded ``state.checkpoint_interval_seconds`` (from the next tick on)."""
        self.interval_seconds = seconds

    def now(self) -> bool:
        """Step 5: checkpoint every owned partition in full now and commit (poll thread).
        False if it could not (dead letters unacknowledged, a failed write): the next tick
        then writes every partition in full."""
        self.wait()
        self.commit_durable()
        self.partitions.forget_saved()
        self._last = self.clock()
        if not self._dead_letters_durable():
            return False
        try:
            offsets = self.partitions.capture().write()
        except Exception:
            log.exception("checkpoint write failed; offsets not committed")
            self.partitions.forget_saved()
            return False
        self._commit(offsets)
        return True

    def final(self) -> None:
        """Step 4: the shutdown checkpoint (raises if it cannot be made durable)."""
        if self._thread is not None:
            self._thread.join()
        self.commit_durable()
        if not self._dead_letters_durable():
            log.error("shutting down with unacknowledged dead letters: offsets not committed")
            return
        self._commit(self.partitions.capture().write())
