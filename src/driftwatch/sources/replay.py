"""A JSON-lines file as a source of records (``driftwatch replay``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from driftwatch.sources.base import Record

#: Leading/trailing whitespace a line may carry beyond ``max_line_bytes``.
_SLACK = 64
_SKIP_CHUNK = 1 << 16


def read_records(
    path: Path, topic: str = "replay", max_line_bytes: int | None = None
) -> Iterator[Record]:
    """One record per non-blank line; the offset is the line number (from 0).

    With ``max_line_bytes``, memory stays bounded whatever the file holds: a longer line is
    not read whole, but yields its first ``max_line_bytes`` + 64 bytes (which the decoder
    then rejects as ``too_large``) and the rest of it is skipped.
    """
    cap = None if max_line_bytes is None else max_line_bytes + _SLACK
    with path.open("rb") as fh:
        lineno = 0
        while True:
            line = fh.readline() if cap is None else fh.readline(cap)
            if not line:
                return
            if cap is not None and len(line) >= cap and not line.endswith(b"\n"):
                rest = fh.readline(_SKIP_CHUNK)
                while rest and not rest.endswith(b"\n"):
                    rest = fh.readline(_SKIP_CHUNK)
                yield Record(topic, 0, lineno, None, line, 0.0)
            else:
                stripped = line.strip()
                if stripped:
                    yield Record(topic, 0, lineno, None, stripped, 0.0)
            lineno += 1
