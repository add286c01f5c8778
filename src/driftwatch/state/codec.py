"""The checkpoint file format.

``b"DWCK"`` | format version (u16, big-endian) | CRC-32 of the payload (u32) | payload,
where the payload is a zlib-compressed ``.npz`` archive (no pickles) holding the arrays
and a ``__meta__`` JSON document. A wrong magic, version or CRC raises
:class:`CheckpointError`: a checkpoint is refused, never half-read.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from typing import Any

import numpy as np

from driftwatch.errors import CheckpointError

MAGIC = b"DWCK"
VERSION = 1
_HEADER = struct.Struct(">4sHI")
_META = "__meta__"


def encode(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    if _META in arrays:
        raise ValueError(f"{_META} is reserved")
    buf = io.BytesIO()
    doc = np.frombuffer(json.dumps(meta, separators=(",", ":")).encode(), dtype=np.uint8)
    np.savez(buf, allow_pickle=False, **{_META: doc}, **arrays)
    payload = zlib.compress(buf.getvalue(), 1)  # level 1: ~2x faster than 6, ~10% larger
    return _HEADER.pack(MAGIC, VERSION, zlib.crc32(payload)) + payload


def decode(blob: bytes, where: str = "checkpoint") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if len(blob) < _HEADER.size:
        raise CheckpointError(f"{where}: truncated ({len(blob)} bytes)")
    magic, version, crc = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise CheckpointError(f"{where}: not a driftwatch checkpoint")
    if version != VERSION:
        raise CheckpointError(
            f"{where}: checkpoint format version {version}, this driftwatch reads version {VERSION}"
        )
    payload = blob[_HEADER.size :]
    if zlib.crc32(payload) != crc:
        raise CheckpointError(f"{where}: corrupt (CRC mismatch)")
    try:
        with np.load(io.BytesIO(zlib.decompress(payload)), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop(_META).tobytes())
    except (ValueError, OSError, zlib.error, KeyError) as exc:
        raise CheckpointError(f"{where}: unreadable ({exc})") from None
    return meta, arrays
