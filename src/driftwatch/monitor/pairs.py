"""Joining the request and response halves of a KServe payload log by CloudEvent id.

KServe logs each inference as two CloudEvents with one ``id`` (CONTRACT section 12): the
request (the features) and the response (the predictions). :class:`PairJoin` holds whichever
half comes first until the other arrives, then hands both back, once.

Bounded, like :class:`driftwatch.monitor.join.LabelJoin`:

- a half waits at most ``ttl_seconds`` after its time ``at`` (``expire`` drops it as
  ``expired``; a half already that old on arrival, with nothing to join, is dropped at once),
  and at most ``max_pending`` halves wait (beyond, the longest-waiting is dropped as
  ``capacity``);
- the ids of the last ``max_pending`` completed pairs are remembered, each for ``ttl_seconds``
  after it completed, so a half arriving again after its pair completed (a record replayed
  after a crash) is dropped as ``duplicate`` instead of waiting out the TTL. A half whose
  kind is already waiting under its id is a ``duplicate`` too (the first one is kept).

Pure: ``now`` is an argument (on the clock of ``at``); payloads are opaque JSON-able objects,
so :meth:`PairJoin.state` is JSON-able. :meth:`PairJoin.expire` costs O(expired halves +
stale index entries): the waiting halves are indexed in a heap by time.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, OrderedDict
from typing import Any, Literal

Kind = Literal["request", "response"]
KINDS: tuple[Kind, Kind] = ("request", "response")


class PairJoin:
    """Request and response halves joined by id, either order, bounded and with a TTL."""

    #: stale expiry-index entries tolerated beyond twice the waiting halves before a rebuild
    _REBUILD_SLACK = 1024

    def __init__(self, ttl_seconds: float = 300.0, max_pending: int = 100_000) -> None:
        if not (ttl_seconds > 0 and math.isfinite(ttl_seconds)):
            raise ValueError("ttl_seconds must be positive and finite")
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.ttl_seconds = float(ttl_seconds)
        self.max_pending = max_pending
        #: waiting halves, oldest arrival first: id -> (kind, payload, at, seq)
        self._pending: OrderedDict[str, tuple[Kind, Any, float, int]] = OrderedDict()
        #: ids of completed pairs, oldest first: id -> completion time (``now``)
        self._completed: OrderedDict[str, float] = OrderedDict()
        #: halves dropped, by reason: expired, capacity, duplicate
        self.dropped: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()  # waiting halves by kind
        #: expiry index: (at, seq, id); an entry is stale once its seq no longer waits
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0

    # -- queries --------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Halves waiting for their other half."""
        return len(self._pending)

    def pending_by_kind(self) -> dict[str, int]:
        """Waiting halves by kind: ``{"request": n, "response": m}``."""
        return {kind: self._counts[kind] for kind in KINDS}

    @property
    def completed(self) -> int:
        """Completed ids remembered (to drop replayed halves)."""
        return len(self._completed)

    # -- updates --------------------------------------------------------------------------------
    def add(
        self, ce_id: str, kind: Kind, payload: Any, at: float, now: float
    ) -> tuple[Any, Any] | None:
        """Add one half; returns ``(request payload, response payload)`` when it completes a
        pair, else None (it waits, or it was dropped and counted in :attr:`dropped`)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be 'request' or 'response', not {kind!r}")
        if not math.isfinite(at):
            raise ValueError("at must be finite")
        if ce_id in self._completed:
            self.dropped["duplicate"] += 1
            return None
        waiting = self._pending.get(ce_id)
        if waiting is not None:
            other_kind, other, _, _ = waiting
            if other_kind == kind:
                self.dropped["duplicate"] += 1
                return None
            del self._pending[ce_id]
            self._counts[other_kind] -= 1
            self._remember(ce_id, now)
            return (payload, other) if kind == "request" else (other, payload)
        if now - at > self.ttl_seconds:
            self.dropped["expired"] += 1
            return None
        self._seq += 1
        self._pending[ce_id] = (kind, payload, at, self._seq)
        self._counts[kind] += 1
        self._index(at, self._seq, ce_id)
        while len(self._pending) > self.max_pending:
            _, (old_kind, _, _, _) = self._pending.popitem(last=False)
            self._counts[old_kind] -= 1
            self.dropped["capacity"] += 1
        return None

    def expire(self, now: float) -> int:
        """Drop halves that waited past the TTL (``now - at > ttl``, counted as expired) and
        forget completed ids older than the TTL; returns how many halves expired."""
        ttl, heap, expired = self.ttl_seconds, self._heap, 0
        while heap and now - heap[0][0] > ttl:  # the test add() makes, so both agree
            _, seq, ce_id = heapq.heappop(heap)
            waiting = self._pending.get(ce_id)
            if waiting is not None and waiting[3] == seq:
                del self._pending[ce_id]
                self._counts[waiting[0]] -= 1
                expired += 1
        done = self._completed
        while done:
            ce_id, at = next(iter(done.items()))
            if not now - at > ttl:
                break
            del done[ce_id]
        if expired:
            self.dropped["expired"] += expired
        return expired

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-able state (payloads as given); :meth:`restore` takes it back."""
        return {
            "pending": [
                [i, kind, payload, at] for i, (kind, payload, at, _) in self._pending.items()
            ],
            "completed": [[i, at] for i, at in self._completed.items()],
            "dropped": dict(self.dropped),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._pending = OrderedDict()
        self._counts = Counter()
        self._seq = 0
        for ce_id, kind, payload, at in state["pending"]:
            self._seq += 1
            self._pending[ce_id] = (kind, payload, float(at), self._seq)
            self._counts[kind] += 1
        self._heap = [(at, seq, i) for i, (_, _, at, seq) in self._pending.items()]
        heapq.heapify(self._heap)
        self._completed = OrderedDict((i, float(at)) for i, at in state["completed"])
        self.dropped = Counter(state["dropped"])

    # -- internals ------------------------------------------------------------------------------
    def _remember(self, ce_id: str, now: float) -> None:
        self._completed[ce_id] = now
        while len(self._completed) > self.max_pending:
            self._completed.popitem(last=False)

    def _index(self, at: float, seq: int, ce_id: str) -> None:
        """Index a half just added to ``_pending``; when stale entries (joined or dropped
        halves) outnumber the waiting ones, rebuild instead: O(1) amortised."""
        if len(self._heap) >= 2 * len(self._pending) + self._REBUILD_SLACK:
            self._heap = [(a, s, i) for i, (_, _, a, s) in self._pending.items()]
            heapq.heapify(self._heap)
        else:
            heapq.heappush(self._heap, (at, seq, ce_id))
