"""One root exception; each subclass tells the operator what to do."""

from __future__ import annotations


class DriftwatchError(Exception):
    """Root of every error driftwatch raises on purpose."""


class ConfigError(DriftwatchError):
    """The configuration is invalid. Fix each listed key and run `driftwatch check-config`.

    ``problems`` holds one ``"key.path: message"`` string per problem.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ReferenceDataError(DriftwatchError):
    """A reference data file cannot be used. Check its path, format and columns."""

    def __init__(self, model: str, message: str) -> None:
        self.model = model
        super().__init__(f"models[{model}].reference: {message}")


class InvalidEvent(DriftwatchError):
    """A record is not a valid event. It is counted, dead-lettered and skipped; never raised out."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class CheckpointError(DriftwatchError):
    """A checkpoint cannot be read.

    Move the state directory aside to start empty, or restore a backup.
    """


class OutboxError(DriftwatchError):
    """The webhook outbox (SQLite, ``state.path/outbox.sqlite3``) cannot be written or read.

    Nothing was half-written: a failed write is rolled back whole. Check that ``state.path``
    is writable, the disk is not full and no other process holds the database locked.
    """
