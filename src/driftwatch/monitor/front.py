"""What a model keeps about its input records, before their events reach the window.

* **Copies already applied** (``kafka.keyed_by_model: false``, ``format: cloudevents``):
  per input partition of the un-keyed topic, the highest input offset applied
  (``repartition.SOURCE_HEADER``); a copy at or below it was applied before a crash or
  rebalance made the re-keying stage copy it again, and is skipped.
* **Request/response halves** (``format: cloudevents``): a request's validated rows
  wait for their response (or the other way round) in a :class:`PairJoin`.

Both are checkpointed with the model (meta key ``front``), so a restore resumes exactly.
"""

from __future__ import annotations

from typing import Any

from driftwatch.monitor.pairs import PairJoin


class ModelFront:
    def __init__(self, ttl_seconds: float = 600.0, max_pending: int = 20_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_pending = max_pending
        #: input partition -> highest input offset applied
        self.watermarks: dict[int, int] = {}
        self.pairs = PairJoin(ttl_seconds, max_pending)
        self.duplicates = 0  # copies skipped

    @property
    def has_pairs(self) -> bool:
        """Whether any half ever waited here (payload logs): a keyed topic's models skip
        the pair join's expiry and their checkpoints omit it."""
        return bool(self.pairs.pending or self.pairs.completed or self.pairs.dropped)

    def fresh(self, partition: int, offset: int) -> bool:
        """Whether the copy of input ``partition``/``offset`` is new (and mark it seen)."""
        if offset <= self.watermarks.get(partition, -1):
            self.duplicates += 1
            return False
        self.watermarks[partition] = offset
        return True

    def state(self) -> dict[str, Any]:
        return {
            "watermarks": {str(p): o for p, o in self.watermarks.items()},
            "pairs": self.pairs.state() if self.has_pairs else None,
            "duplicates": self.duplicates,
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state` (None: a checkpoint from before, or of a keyed topic)."""
        self.pairs = PairJoin(self.ttl_seconds, self.max_pending)
        if not state:
            self.watermarks = {}
            self.duplicates = 0
            return
        self.watermarks = {int(p): int(o) for p, o in state.get("watermarks", {}).items()}
        if state.get("pairs"):
            self.pairs.restore(state["pairs"])
        self.duplicates = int(state.get("duplicates", 0))
