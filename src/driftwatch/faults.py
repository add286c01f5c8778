"""Test-only fault injection: crash the process at a named point, deterministically.

Never set in production. ``DRIFTWATCH_FAULT=NAME[:ARG][@HIT]`` makes the process
SIGKILL itself (as ``kill -9`` would) the HIT-th time (default: the first) that
:func:`point` is reached with that NAME (and that ARG, when one is given), e.g.
``DRIFTWATCH_FAULT=state_store.after_chunk:2@3``: the third time a checkpoint's second
chunk has been acknowledged. The variable is read once, at import; when it is unset
:func:`point` costs one global lookup and a comparison.

Points: ``state_store.after_chunk:K`` (K chunks of a state-topic checkpoint acknowledged,
no manifest yet), ``state_store.before_manifest`` (every chunk acknowledged),
``state_store.after_manifest`` (manifest acknowledged, previous generation not yet
tombstoned), ``state_store.after_tombstones``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

Fault = tuple[str, str | None, int]


def parse(spec: str | None) -> Fault | None:
    """``NAME[:ARG][@HIT]`` -> (name, arg or None, hit); None when unset or empty."""
    if not spec:
        return None
    point, _, hit = spec.partition("@")
    name, sep, arg = point.partition(":")
    if not name or (hit and not hit.isdigit()):
        raise ValueError(f"DRIFTWATCH_FAULT={spec!r}: expected NAME[:ARG][@HIT]")
    return name, arg if sep else None, int(hit) if hit else 1


_FAULT = parse(os.environ.get("DRIFTWATCH_FAULT"))
_lock = threading.Lock()
_hits = 0


def point(name: str, arg: object = None) -> None:
    """A place where a test may crash the process (no-op unless DRIFTWATCH_FAULT names it)."""
    if _FAULT is not None:
        _reached(_FAULT, name, arg)


def _reached(fault: Fault, name: str, arg: object) -> None:
    global _hits
    want, want_arg, hit = fault
    if name != want or (want_arg is not None and str(arg) != want_arg):
        return
    with _lock:
        _hits += 1
        if _hits < hit:
            return
    where = name if arg is None else f"{name}:{arg}"
    sys.stderr.write(f"driftwatch: DRIFTWATCH_FAULT reached at {where} (hit {_hits}): SIGKILL\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
