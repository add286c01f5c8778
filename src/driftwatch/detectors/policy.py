"""Alert policy: consecutive breaches before firing, one resolve per firing, cooldown.

Pure state machine: ``update(breach, now)`` is fed one evaluation at a time and
returns the edge to notify, if any. Time is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Edge(str, Enum):
    FIRED = "fired"
    RESOLVED = "resolved"


@dataclass
class RuleState:
    """What the policy remembers about one (model, rule)."""

    firing: bool = False
    breaches_in_row: int = 0
    notified: bool = False  # whether the current firing was notified (so its resolve is too)
    last_notified_at: float | None = None
    #: notified firings so far: numbers each notification, so its id is the same wherever
    #: and whenever the same firing is re-derived (after a restart, on another replica)
    firings: int = 0


class AlertPolicy:
    """``consecutive`` breaching evaluations in a row fire a rule; the first non-breaching
    one resolves it. A firing is notified unless the same rule was notified less than
    ``cooldown_seconds`` ago; a resolve is notified exactly when its firing was."""

    def __init__(self, consecutive: int = 1, cooldown_seconds: float = 3600.0) -> None:
        if consecutive < 1:
            raise ValueError("consecutive must be >= 1")
        if cooldown_seconds < 0:
            raise ValueError("cooldown_seconds must be >= 0")
        self.consecutive = consecutive
        self.cooldown_seconds = cooldown_seconds

    def update(self, state: RuleState, breach: bool, now: float) -> Edge | None:
        if breach:
            # capped: once ``consecutive`` is reached the count changes nothing, and a state
            # that changed on every evaluation would be checkpointed on every interval
            state.breaches_in_row = min(state.breaches_in_row + 1, self.consecutive)
            if not state.firing and state.breaches_in_row >= self.consecutive:
                state.firing = True
                cooled = (
                    state.last_notified_at is None
                    or now - state.last_notified_at >= self.cooldown_seconds
                )
                state.notified = cooled
                if cooled:
                    state.last_notified_at = now
                    state.firings += 1
                    return Edge.FIRED
            return None
        state.breaches_in_row = 0
        if state.firing:
            state.firing = False
            if state.notified:
                state.notified = False
                return Edge.RESOLVED
        return None
