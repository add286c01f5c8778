"""The boundary between transports and the pipeline."""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


def drain(q: queue.SimpleQueue[T]) -> list[T]:
    """Everything a queue holds now, oldest first, without waiting."""
    out: list[T] = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


@dataclass(frozen=True, slots=True)
class Record:
    """A raw record as a transport delivers it; decoding happens in ``events``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # seconds; the transport's record time


class DeadLetters(Protocol):
    def send(self, record: Record, reason: str, detail: str) -> None: ...

    def flush(self) -> None: ...
