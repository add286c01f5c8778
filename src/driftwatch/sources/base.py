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
    """Where the pipeline copies invalid records (all it needs: ``send``).

    ``send`` must never raise and never block the poll loop for long."""

    def send(self, record: Record, reason: str, detail: str) -> None: ...


class DurableDeadLetters(DeadLetters, Protocol):
    """A dead-letter sink the daemon can make durable before it commits offsets.

    ``flush(timeout)`` waits at most about ``timeout`` seconds and never raises; True iff
    every dead letter handed to ``send`` so far (except those dropped and counted in
    ``lost``) has been acknowledged. ``sent``/``failed``/``lost`` count acknowledged
    letters, failures observed (each retry counts) and letters dropped for good.
    ``close`` never raises and returns within about ten seconds."""

    sent: int
    failed: int
    lost: int

    def flush(self, timeout: float) -> bool: ...

    def close(self) -> None: ...
