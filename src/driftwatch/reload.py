"""Live reload (CONTRACT section 9): ``SIGHUP`` re-reads the config file and references.

How a reload runs
-----------------
1. The ``SIGHUP`` handler only sets an event. The poll loop sees it between two polls
   (within half a second) and calls :meth:`driftwatch.daemon.Daemon.reload` on its own
   thread: never inside the signal handler, never during an apply (same thread), never
   during an evaluation (the swap takes the pipeline's two locks, see step 3). Signals
   arriving meanwhile coalesce into one reload. (Only ``driftwatch run --config`` handles
   ``SIGHUP``; ``driftwatch demo`` keeps its default: exit.)
2. :func:`plan_reload` builds the whole new side off to the side, touching nothing that
   runs and taking no lock: the config file (:func:`~driftwatch.config.load_config`), the
   keys that cannot change live (:func:`frozen_changes`), the webhook targets with their
   secrets, and every model's monitor from its reference (``build_pipeline`` into a
   throwaway pipeline). Any problem is a :class:`~driftwatch.errors.ConfigError` naming
   the key: the daemon logs ``config reload refused: <problems>`` at ERROR, counts it in
   ``driftwatch_config_reload_failures_total``, sets ``driftwatch_config_last_reload_success``
   to 0, and keeps running the old config untouched.
3. :meth:`~driftwatch.pipeline.Pipeline.adopt` swaps the new monitors, alert policies,
   webhooks and decoder in under both locks, having moved the state over first (so an
   exception there refuses the reload too). Then the daemon hands the new webhook
   targets to the sender, reschedules the evaluation if its interval changed, writes a
   full checkpoint at once when a model restarted, was added or removed
   (:meth:`~driftwatch.checkpointer.Checkpointer.now`), evaluates at once, and sets
   ``driftwatch_config_last_reload_success`` to 1 and
   ``driftwatch_config_last_reload_success_timestamp_seconds`` to now.

What happens to each model
--------------------------
* **Kept** when its *layout fingerprint* (``monitor.model.layout_fingerprint``: features
  and their kinds, the bin edges and categories taken from the reference, segments, the
  performance layout, the window's kind and length) is unchanged *and* its reference
  file holds the same bytes (SHA-256; a moved file with the same content is the same
  reference). Its window, label join, counters and alert state (firing rules, cooldown,
  notification lineage) carry over; everything else of its config takes effect at once:
  drift method and thresholds, newest-events tests, the performance rule, label TTL and
  capacity, alert ``consecutive``/``cooldown_seconds``/``resolve_ratio``, its webhooks.
* **Restarted** otherwise (logged at INFO: ``model X: reference changed: window
  restarted``): its window and label join start empty; its consumption counters
  (``driftwatch_events_total`` ...) and alert rule states carry over, so a firing rule
  sends its ``resolved`` once the restarted window stops breaching (as when a window
  empties) and notification ids are never reused.
* **Added**: starts empty with a new notification lineage. **Removed**: dropped; its
  series leave ``/metrics``; its notifications already in the outbox are still delivered
  while their webhook is configured.

Keys
----
Live: ``models``, ``webhooks`` (URLs, formats, which environment variable holds a secret,
timeouts, retries), ``evaluation.*``, ``state.checkpoint_interval_seconds`` and the
decoder's ``kafka.max_id_length``, ``kafka.min_timestamp``, ``kafka.max_future_seconds``.
Every other key of ``kafka``, ``http`` and ``state`` (brokers, topics, group, client
options, library, bind address, state path and backend) belongs to connections and files
opened at start: changing one refuses the reload, naming the key; restart driftwatch to
apply it. Secrets are read from the daemon's environment, which a reload cannot change: a
webhook may name another variable only if it was set when driftwatch started.

Checkpoints
-----------
A restarted or added model's layout changes its fingerprint, and a checkpoint holding the
old one would be refused at the next start. So after such a reload every owned partition
is checkpointed in full at once (then by every tick and at shutdown, as always), and a
checkpoint of a partition not owned at the time of the reload (assigned later, or written
by a replica not yet reloaded) that holds a relaid model under its old layout starts that
model empty instead of being refused (``Partitions.relaid``). With several replicas,
reload all of them with the same config.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftwatch.app import build_pipeline, webhook_targets
from driftwatch.config import Config, ModelConfig, load_config
from driftwatch.errors import ConfigError, DriftwatchError
from driftwatch.monitor.model import ModelMonitor
from driftwatch.pipeline import Pipeline
from driftwatch.sinks.webhook import WebhookTarget

log = logging.getLogger(__name__)

#: Sections whose keys are fixed at start (connections, files, the bind address) ...
FROZEN_SECTIONS = ("kafka", "http", "state")
#: ... except these, which a reload applies.
LIVE_KEYS = frozenset(
    {
        "kafka.max_id_length",
        "kafka.min_timestamp",
        "kafka.max_future_seconds",
        "state.checkpoint_interval_seconds",
    }
)
_SECRET_WORDS = ("password", "secret", "token", "sasl", "ssl", "key")
_MISSING = object()


@dataclass(frozen=True)
class ReloadStatus:
    """What ``/metrics`` and ``/status`` say about config loads (replaced whole)."""

    success: bool
    last_success_at: float
    failures: int = 0
    reloads: int = 0
    errors: tuple[str, ...] = ()

    def succeeded(self, now: float) -> ReloadStatus:
        return ReloadStatus(True, now, self.failures, self.reloads + 1)

    def failed(self, problems: list[str]) -> ReloadStatus:
        return ReloadStatus(
            False, self.last_success_at, self.failures + 1, self.reloads, tuple(problems)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "last_reload_success": self.success,
            "last_reload_success_at": self.last_success_at,
            "reloads": self.reloads,
            "reload_failures": self.failures,
            "last_reload_errors": list(self.errors),
        }


@dataclass
class ReloadPlan:
    """A new config with everything built from it, not yet running."""

    config: Config
    #: a throwaway pipeline holding the new monitors, alert policies and decoder
    pipeline: Pipeline
    targets: dict[str, WebhookTarget]
    digests: dict[str, str | None]
    #: models whose state carries over whole
    keep: frozenset[str]
    #: models of both configs that restart their window -> what changed, for the log
    restart: dict[str, str] = field(default_factory=dict)


def reference_digests(config: Config) -> dict[str, str | None]:
    """SHA-256 of each model's reference file (None: unreadable; building it will say why).

    Taken *before* the references are loaded, so a file replaced in between reads as
    changed at the next reload (a needless restart, never a missed one)."""
    out: dict[str, str | None] = {}
    for m in config.models:
        h = hashlib.sha256()
        try:
            with m.reference.open("rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError:
            out[m.name] = None
        else:
            out[m.name] = h.hexdigest()
    return out


def frozen_changes(old: Config, new: Config) -> list[str]:
    """One problem per changed key that only a restart can apply, naming it."""
    problems = []
    for section in FROZEN_SECTIONS:
        a = getattr(old, section).model_dump()
        b = getattr(new, section).model_dump()
        for path, was, now in _changed(a, b, section):
            if path in LIVE_KEYS:
                continue
            shown = "" if _secret(path) else f" (was {_show(was)}, now {_show(now)})"
            problems.append(
                f"{path}: cannot change while driftwatch runs{shown}; restart driftwatch to "
                "apply it"
            )
    return problems


def _changed(a: Any, b: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            yield from _changed(a.get(key, _MISSING), b.get(key, _MISSING), f"{path}.{key}")
    elif a != b:
        yield path, a, b


def _secret(path: str) -> bool:
    low = path.lower()
    return low.startswith("kafka.client.") or any(w in low for w in _SECRET_WORDS)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "unset"
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def plan_reload(
    path: Path,
    config: Config,
    pipeline: Pipeline,
    digests: Mapping[str, str | None],
    environ: dict[str, str] | None = None,
) -> ReloadPlan:
    """Load ``path`` and build everything it needs beside the running ``pipeline`` (whose
    config is ``config`` and references' digests ``digests``), deciding each model's fate.
    Raises :class:`ConfigError` naming every key it could find wrong; changes nothing."""
    new = load_config(path)
    problems = frozen_changes(config, new)
    targets: dict[str, WebhookTarget] = {}
    try:
        targets = webhook_targets(new, environ)
    except ConfigError as exc:
        problems.extend(exc.problems)
    new_digests = reference_digests(new)
    try:
        fresh = build_pipeline(new)
    except ConfigError as exc:
        problems.extend(exc.problems)
    except (DriftwatchError, ValueError) as exc:  # a reference that cannot be used
        problems.append(str(exc))
    if problems:
        raise ConfigError(problems)
    old_models = {m.name: m for m in config.models}
    keep: set[str] = set()
    restart: dict[str, str] = {}
    for m in new.models:
        old = pipeline.monitors.get(m.name)
        if old is None:
            continue
        same_reference = digests.get(m.name) is not None and (
            digests.get(m.name) == new_digests[m.name]
        )
        if same_reference and _layout(old) == _layout(fresh.monitors[m.name]):
            keep.add(m.name)
        else:
            restart[m.name] = _what_changed(old_models.get(m.name), m, same_reference)
    return ReloadPlan(new, fresh, targets, new_digests, frozenset(keep), restart)


def _layout(monitor: ModelMonitor) -> tuple[str, str, int, int]:
    """What a state can move between monitors only when equal (what ``restore`` checks)."""
    window = monitor.window
    return monitor.fingerprint, type(window).__name__, window.nbins, window.nsums


def _what_changed(old: ModelConfig | None, new: ModelConfig, same_reference: bool) -> str:
    """For the log: which of the layout's sources changed."""
    if old is None:
        return "layout"
    parts = [] if same_reference else ["reference"]
    for key in ("window", "features", "task", "segments", "max_segment_values"):
        if getattr(old, key) != getattr(new, key):
            parts.append(key)
    return "/".join(parts) or "reference bins"
