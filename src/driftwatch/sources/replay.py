"""A JSON-lines file as a source of records (``driftwatch replay``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from driftwatch.sources.base import Record


def read_records(path: Path, topic: str = "replay") -> Iterator[Record]:
    """One record per non-blank line; the offset is the line number (from 0)."""
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh):
            stripped = line.strip()
            if not stripped:
                continue
            yield Record(topic, 0, lineno, None, stripped, 0.0)
