"""Per-partition checkpoints and where they are kept.

The partition is the unit of state: a model's events arrive on the partition its
name hashes to (the producer's key), so a partition's checkpoint holds the complete
state of the models it owns — windows, label joins, alert states — together with the
next offsets of the prediction and label topics' partitions it reflects.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from driftwatch.errors import CheckpointError
from driftwatch.state import codec

ModelState = tuple[dict[str, Any], dict[str, np.ndarray]]


@dataclass
class PartitionCheckpoint:
    topic: str  # the prediction topic
    partition: int
    offsets: dict[str, int]  # topic -> next offset to consume
    models: dict[str, ModelState]
    alerts: dict[str, dict[str, Any]]

    def encode(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        metas: dict[str, Any] = {}
        for name, (meta, arrs) in self.models.items():
            metas[name] = meta
            for key, arr in arrs.items():
                arrays[f"{name}::{key}"] = arr
        meta = {
            "topic": self.topic,
            "partition": self.partition,
            "offsets": self.offsets,
            "models": metas,
            "alerts": self.alerts,
        }
        return codec.encode(meta, arrays)

    @classmethod
    def decode(cls, blob: bytes, where: str) -> PartitionCheckpoint:
        meta, arrays = codec.decode(blob, where)
        models: dict[str, ModelState] = {}
        for name, m in meta["models"].items():
            prefix = f"{name}::"
            models[name] = (
                m,
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)},
            )
        return cls(
            meta["topic"], int(meta["partition"]), dict(meta["offsets"]), models, meta["alerts"]
        )


class CheckpointStore(Protocol):
    def save(self, key: str, blob: bytes) -> None: ...

    def load(self, key: str) -> bytes | None: ...


class FileStore:
    """One file per partition; written to a temp file, fsynced, renamed over the old one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.dwck"

    def save(self, key: str, blob: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dirfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dirfd)  # the rename itself is durable
        finally:
            os.close(dirfd)

    def load(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"{self.path(key)}: {exc.strerror}") from None


def checkpoint_key(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"
