"""Joining delayed labels to predictions by id, whichever arrives first.

Bounded: predictions wait for their label only while their pane is in the window;
labels wait for their prediction at most ``ttl_seconds`` and at most ``max_pending``
of them (the oldest is dropped first). The ids of the last ``max_pending`` predictions
that left the window unlabelled are remembered, so a label arriving for one of them is
dropped as late at once instead of waiting out the TTL. Pure: ``now`` is an argument.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

#: Waiting labels are filed in time buckets this fraction of the TTL wide, so expiry costs
#: O(expired labels): a label expires when its whole bucket is past the TTL, i.e. at most
#: ``ttl / EXPIRY_BUCKETS`` later than its own deadline.
EXPIRY_BUCKETS = 64


@dataclass(slots=True)
class Awaiting:
    """A prediction in the window, waiting for (or already given) its label."""

    pane: int
    prediction: float | str
    score: float | None
    timestamp: float
    regions: tuple[int, ...]
    labeled: bool = False
    #: the prediction's model-version slot (``monitor.versions``); -1: none
    version: int = -1


@dataclass(frozen=True, slots=True)
class Joined:
    prediction: Awaiting
    label: float | str
    delay_seconds: float


class LabelJoin:
    def __init__(self, ttl_seconds: float = 86_400.0, max_pending: int = 1_000_000) -> None:
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be positive")
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.ttl_seconds = ttl_seconds
        self.max_pending = max_pending
        self.predictions: dict[str, Awaiting] = {}
        self._by_pane: dict[int, list[str]] = {}
        #: labels waiting for their prediction: id -> (label, label time), oldest first
        self.labels: OrderedDict[str, tuple[float | str, float]] = OrderedDict()
        self.dropped: Counter[str] = Counter()  # reason -> labels: late, duplicate, capacity
        #: ids of predictions that left the window unlabelled, oldest first
        self.gone: OrderedDict[str, None] = OrderedDict()
        self._bucket_width = self.ttl_seconds / EXPIRY_BUCKETS
        #: expiry index of the waiting labels: time bucket -> ids (may hold stale ids)
        self._buckets: dict[int, list[str]] = {}
        self._bucket_heap: list[int] = []
        self._indexed = 0  # entries in the index, stale ones included

    def _reindex(self) -> None:
        self._buckets, self._bucket_heap, self._indexed = {}, [], 0
        for ident, (_, at) in self.labels.items():
            self._index(ident, at)

    def _bucket(self, at: float) -> int:
        return math.floor(at / self._bucket_width)

    def _index(self, ident: str, at: float) -> None:
        key = self._bucket(at)
        ids = self._buckets.get(key)
        if ids is None:
            self._buckets[key] = ids = []
            heapq.heappush(self._bucket_heap, key)
        ids.append(ident)
        self._indexed += 1

    def _file(self, ident: str, at: float) -> None:
        """Index a label just added to ``labels``."""
        if self._indexed >= 2 * len(self.labels) + 1024:
            self._reindex()  # stale ids (joined, dropped) outnumber the waiting: O(1) amortised
        else:
            self._index(ident, at)

    def add_prediction(self, ident: str, waiting: Awaiting) -> Joined | None:
        """Remember a prediction; returns the join if its label was already waiting."""
        if waiting.pane < 0:
            return None
        old = self.predictions.get(ident)
        if old is not None:  # a repeated id: the newer prediction replaces the older
            old_ids = self._by_pane.get(old.pane)
            if old_ids is not None and ident in old_ids:
                old_ids.remove(ident)
        self.predictions[ident] = waiting
        self._by_pane.setdefault(waiting.pane, []).append(ident)
        pending = self.labels.pop(ident, None)
        if pending is None:
            return None
        waiting.labeled = True
        label, at = pending
        return Joined(waiting, label, at - waiting.timestamp)

    def add_label(self, ident: str, label: float | str, at: float, now: float) -> Joined | None:
        """Join a label to its prediction, or keep it waiting; duplicates count once."""
        waiting = self.predictions.get(ident)
        if waiting is not None:
            if waiting.labeled:
                self.dropped["duplicate"] += 1
                return None
            waiting.labeled = True
            return Joined(waiting, label, at - waiting.timestamp)
        if ident in self.labels:
            self.dropped["duplicate"] += 1
            return None
        if ident in self.gone:
            del self.gone[ident]
            self.dropped["late"] += 1
            return None
        if now - at > self.ttl_seconds:
            self.dropped["late"] += 1
            return None
        self.labels[ident] = (label, at)
        self._file(ident, at)
        while len(self.labels) > self.max_pending:
            self.labels.popitem(last=False)
            self.dropped["capacity"] += 1
        return None

    def forget_panes(self, keys: list[int]) -> None:
        """Predictions whose pane left the window can no longer be joined."""
        for key in keys:
            for ident in self._by_pane.pop(key, ()):
                w = self.predictions.get(ident)
                if w is not None and w.pane == key:
                    del self.predictions[ident]
                    if not w.labeled:
                        self.gone[ident] = None
        while len(self.gone) > self.max_pending:
            self.gone.popitem(last=False)

    def state(self) -> dict[str, Any]:
        return {
            "predictions": [
                [
                    i,
                    w.pane,
                    w.prediction,
                    w.score,
                    w.timestamp,
                    list(w.regions),
                    w.labeled,
                    w.version,
                ]
                for i, w in self.predictions.items()
            ],
            "labels": [[i, lab, at] for i, (lab, at) in self.labels.items()],
            "gone": list(self.gone),
            "dropped": dict(self.dropped),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.predictions = {}
        self._by_pane = {}
        # a checkpoint from before model versions has 7 fields: no version slot (-1)
        for ident, pane, pred, score, ts, regions, labeled, *rest in state["predictions"]:
            version = int(rest[0]) if rest else -1
            self.predictions[ident] = Awaiting(
                pane, pred, score, ts, tuple(regions), labeled, version
            )
            self._by_pane.setdefault(pane, []).append(ident)
        self.labels = OrderedDict((i, (lab, at)) for i, lab, at in state["labels"])
        self._reindex()
        self.gone = OrderedDict.fromkeys(state["gone"])
        self.dropped = Counter(state["dropped"])

    def expire(self, now: float) -> int:
        """Drop labels that waited past the TTL (counted as late); returns how many.

        Costs O(expired labels + stale index entries), never a scan of every waiting
        label: only time buckets that lie wholly before ``now - ttl`` are visited."""
        cutoff = now - self.ttl_seconds
        heap, expired = self._bucket_heap, 0
        while heap and (heap[0] + 1) * self._bucket_width <= cutoff:
            key = heapq.heappop(heap)
            ids = self._buckets.pop(key, [])
            self._indexed -= len(ids)
            for ident in ids:
                entry = self.labels.get(ident)
                if entry is not None and self._bucket(entry[1]) == key:
                    del self.labels[ident]
                    expired += 1
        self.dropped["late"] += expired
        return expired
