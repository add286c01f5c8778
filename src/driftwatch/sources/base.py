"""The boundary between transports and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
