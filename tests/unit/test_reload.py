"""Config reload (CONTRACT section 9): what a reload keeps, restarts, refuses."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import signal
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from driftwatch.app import build_pipeline
from driftwatch.checkpointer import Checkpointer
from driftwatch.config import load_config
from driftwatch.daemon import Daemon
from driftwatch.errors import CheckpointError, OutboxError
from driftwatch.partitions import Partitions
from driftwatch.reload import frozen_changes, plan_reload, reference_digests
from driftwatch.sources.base import Record
from driftwatch.state.checkpoint import FileStore
from tests.helpers import events, http_get, reference_frame, sample
from tests.unit.test_pipeline import config_dict

T0 = 1_790_000_000.0


def base_config(tmp_path: Path) -> dict[str, Any]:
    """test_pipeline's config with a second model "m2" like "m", an HTTP port and a state
    path (what a daemon needs)."""
    data: dict[str, Any] = config_dict(tmp_path)
    [m] = data["models"]
    data["models"] = [m, {**copy.deepcopy(m), "name": "m2"}]
    data["http"] = {"host": "127.0.0.1", "port": 0}
    data["state"] = {"path": str(tmp_path / "state")}
    return data


def write(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def records(evs: list[dict[str, Any]], start: int = 0) -> list[Record]:
    return [
        Record("p", 0, start + i, e["model"].encode(), json.dumps(e).encode(), 0.0)
        for i, e in enumerate(evs)
    ]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Daemon, Path, dict[str, Any]]]:
    cfg = base_config(tmp_path)
    path = write(tmp_path / "config.yaml", cfg)
    d = Daemon(load_config(path), config_path=path)
    d.http.start()
    try:
        yield d, path, cfg
    finally:
        d.http.stop()
        d.outbox.close()


def metric(d: Daemon, name: str, **labels: str) -> Any:
    return sample(d.exporter.render(None)[0].decode(), name, **labels)


def fire_feature_drift(d: Daemon, model: str = "m") -> str:
    """Fill the model's window with drifted events and evaluate: feature_drift fires."""
    d.pipeline.apply(records(events(1, 1000, model=model)))
    d.pipeline.apply(records(events(2, 1000, model=model, shift=("x2", "color"), start=1000)))
    out = {ev.model: notes for ev, notes in d.pipeline.evaluate(T0)}
    assert [n.type for n in out[model]] == ["drift.detected"]
    assert d.pipeline.alerts[model].states["feature_drift"].firing
    lineage = d.pipeline.alerts[model].lineage
    assert lineage is not None
    return lineage


def test_a_threshold_change_keeps_the_window_and_alert_state_and_takes_effect(setup):
    d, path, cfg = setup
    d.pipeline.new_lineage(["m", "m2"])
    lineage = fire_feature_drift(d)
    before = d.pipeline.monitors["m"]
    counts = before.window.snapshot().counts.copy()
    total = before.events_total
    # nothing drifts at this threshold (and without the newest-events tests)
    cfg["models"][0]["drift"].update(
        threshold=50.0, categorical_threshold=50.0, recent={"enabled": False}
    )
    cfg["models"][0]["alerts"]["consecutive"] = 2
    write(path, cfg)

    assert d.reload()

    after = d.pipeline.monitors["m"]
    assert after is not before and after.spec.rule.threshold == 50.0
    assert after.window.events == 1000 and after.events_total == total
    assert (after.window.snapshot().counts == counts).all()
    alerts = d.pipeline.alerts["m"]
    assert alerts.states["feature_drift"].firing and alerts.lineage == lineage
    assert alerts.policy.consecutive == 2
    assert d.pipeline.telemetry.snapshot().events_total["m"] == total
    # the new threshold is in effect: the firing rule resolves, in the same lineage
    out = {ev.model: (ev, notes) for ev, notes in d.pipeline.evaluate(T0 + 10)}
    ev, notes = out["m"]
    assert not any(f.drift for f in ev.features) and ev.window_events == 1000
    assert [n.type for n in notes] == ["resolved"]
    assert notes[0].id and d.pipeline.alerts["m"].lineage == lineage
    assert metric(d, "driftwatch_config_last_reload_success") == 1
    assert metric(d, "driftwatch_config_reload_failures_total") == 0


def test_a_changed_reference_restarts_only_that_models_window(setup, caplog):
    d, path, cfg = setup
    d.pipeline.new_lineage(["m", "m2"])
    d.pipeline.apply(records(events(1, 600, model="m")))
    d.pipeline.apply(records(events(3, 400, model="m2")))
    lineage = d.pipeline.alerts["m2"].lineage
    reference_frame(seed=9, n=3000).to_csv(path.parent / "ref2.csv", index=False)
    cfg["models"][1]["reference"] = "ref2.csv"
    write(path, cfg)

    with caplog.at_level(logging.INFO, logger="driftwatch.daemon"):
        assert d.reload()

    assert "model m2: reference changed: window restarted" in caplog.text
    assert "model m:" not in caplog.text
    m, m2 = d.pipeline.monitors["m"], d.pipeline.monitors["m2"]
    assert m.window.events == 600 and m.events_total == 600
    assert m2.window.events == 0
    assert m2.events_total == 400  # a counter: a reload is not a reset
    assert d.pipeline.telemetry.snapshot().events_total == {"m": 600, "m2": 400}
    assert d.pipeline.alerts["m2"].lineage == lineage
    d.pipeline.apply(records(events(4, 300, model="m2"), start=400))
    assert m2.window.events == 300 and m2.events_total == 700


def test_a_moved_reference_with_the_same_content_keeps_the_state(setup):
    d, path, cfg = setup
    d.pipeline.apply(records(events(1, 500, model="m2")))
    shutil.copy(path.parent / "ref.csv", path.parent / "same.csv")
    cfg["models"][1]["reference"] = "same.csv"
    write(path, cfg)
    assert d.reload()
    assert d.pipeline.monitors["m2"].window.events == 500


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda m: m.update(window={"events": 2000}), "window"),
        (lambda m: m.update(window={"seconds": 600}), "window"),
        (lambda m: m["features"].pop("x3"), "features"),
        (lambda m: m["features"].update(x3="categorical"), "features"),
        (lambda m: m.update(segments=["color"]), "segments"),
    ],
)
def test_a_changed_window_or_layout_restarts_the_window(setup, caplog, change, why):
    d, path, cfg = setup
    d.pipeline.apply(records(events(1, 500, model="m2")))
    change(cfg["models"][1])
    write(path, cfg)
    with caplog.at_level(logging.INFO, logger="driftwatch.daemon"):
        assert d.reload()
    assert f"model m2: {why} changed: window restarted" in caplog.text
    assert d.pipeline.monitors["m2"].window.events == 0


def test_rules_webhooks_and_label_settings_change_without_a_restart(setup, tmp_path):
    d, path, cfg = setup
    d.pipeline.apply(records(events(1, 500, model="m")))
    m = cfg["models"][0]
    m["drift"] = {
        "method": "ks",
        "threshold": 0.01,
        "min_events": 100,
        "recent": {"enabled": False},
    }
    m["alerts"] = {"consecutive": 3, "cooldown_seconds": 60, "resolve_ratio": 0.8}
    cfg["webhooks"]["retrain"]["url"] = "http://127.0.0.1:2/other"
    cfg["webhooks"]["page"] = {"url": "http://127.0.0.1:3/page"}
    m["webhooks"] = ["retrain", "page"]
    cfg["evaluation"]["interval_seconds"] = 5
    cfg["kafka"]["max_id_length"] = 64
    write(path, cfg)
    assert d.reload()
    assert d.pipeline.monitors["m"].window.events == 500
    assert d.pipeline.monitors["m"].spec.rule.method == "ks"
    assert d.pipeline.alerts["m"].webhooks == ["retrain", "page"]
    assert d.targets["retrain"].url == "http://127.0.0.1:2/other"
    assert d.webhook_names == ["retrain", "page"]
    assert d.config.evaluation.interval_seconds == 5
    assert d.pipeline.decoder.max_id_length == 64


def test_an_invalid_config_is_refused_naming_the_key_and_the_old_one_runs_on(setup, caplog):
    d, path, cfg = setup
    d.pipeline.apply(records(events(1, 500, model="m")))
    running = d.pipeline.monitors
    bad = copy.deepcopy(cfg)
    bad["models"][0]["features"]["x1"] = "numeric"
    write(path, bad)

    with caplog.at_level(logging.ERROR, logger="driftwatch.daemon"):
        assert not d.reload()

    [rec] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert rec.getMessage().startswith("config reload refused: models[0].features.x1: expected")
    assert d.pipeline.monitors is running and running["m"].window.events == 500
    assert metric(d, "driftwatch_config_last_reload_success") == 0
    assert metric(d, "driftwatch_config_reload_failures_total") == 1
    status = d.status()["config"]
    assert status["last_reload_success"] is False and status["reload_failures"] == 1
    assert status["last_reload_errors"][0].startswith("models[0].features.x1")
    # the events keep flowing into the old config's monitors
    d.pipeline.apply(records(events(2, 10, model="m"), start=500))
    assert running["m"].window.events == 510

    write(path, cfg)  # fixed: the next SIGHUP succeeds
    started = metric(d, "driftwatch_config_last_reload_success_timestamp_seconds")
    assert d.reload()
    assert metric(d, "driftwatch_config_last_reload_success") == 1
    assert metric(d, "driftwatch_config_reload_failures_total") == 1
    assert metric(d, "driftwatch_config_last_reload_success_timestamp_seconds") >= started
    assert d.pipeline.monitors["m"].window.events == 510


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c.update(models="nope"), "models:"),
        (lambda c: c["models"][1].update(reference="missing.csv"), "models[m2].reference"),
        (lambda c: c["models"][0]["drift"].update(threshold=-1), "models[0].drift.threshold"),
        (lambda c: c["models"][0].update(webhooks=["nowhere"]), "models[0].webhooks[0]"),
        (
            lambda c: c["webhooks"]["retrain"].update(secret_env="DW_RELOAD_UNSET"),
            "webhooks.retrain.secret_env",
        ),
    ],
)
def test_every_kind_of_bad_config_is_refused_naming_the_key(setup, edit, key):
    d, path, cfg = setup
    edit(cfg)
    write(path, cfg)
    running = d.pipeline.monitors
    assert not d.reload()
    assert d.pipeline.monitors is running
    assert any(p.startswith(key) for p in d.reload_status.errors), d.reload_status.errors


def test_an_unreadable_config_file_is_refused(setup):
    d, path, _ = setup
    path.write_text("models: [unclosed\n")
    assert not d.reload()
    assert d.reload_status.errors[0].startswith(str(path))
    path.unlink()
    assert not d.reload()
    assert "cannot read the config file" in d.reload_status.errors[0]
    assert d.reload_status.failures == 2


def test_a_kafka_http_or_state_key_change_is_refused_naming_it(setup):
    d, path, cfg = setup
    cfg["kafka"]["group_id"] = "other"
    cfg["kafka"]["client"] = {"sasl_plain_password": "hunter2"}
    cfg["http"]["port"] = 9999
    cfg["state"]["backend"] = "kafka"
    write(path, cfg)
    assert not d.reload()
    errors = d.reload_status.errors
    assert errors[0] == (
        "kafka.client.sasl_plain_password: cannot change while driftwatch runs; restart "
        "driftwatch to apply it"
    )
    assert any(
        e.startswith(
            'kafka.group_id: cannot change while driftwatch runs (was "driftwatch", now "other")'
        )
        for e in errors
    )
    assert any(e.startswith("http.port:") for e in errors)
    assert any(e.startswith("state.backend:") for e in errors)
    assert not any("hunter2" in e for e in errors)


def test_frozen_changes_allows_the_live_keys(tmp_path):
    cfg = base_config(tmp_path)
    a = write(tmp_path / "a.yaml", cfg)
    cfg["kafka"].update(max_id_length=10, min_timestamp=0, max_future_seconds=1)
    cfg["state"]["checkpoint_interval_seconds"] = 3
    b = write(tmp_path / "b.yaml", cfg)
    assert frozen_changes(load_config(a), load_config(b)) == []


def test_models_added_and_removed(setup):
    d, path, cfg = setup
    d.pipeline.apply(records(events(1, 300, model="m2")))
    d.pipeline.evaluate(T0)
    added = copy.deepcopy(cfg["models"][1])
    added["name"] = "m3"
    cfg["models"] = [cfg["models"][0], added]
    write(path, cfg)
    assert d.reload()
    assert set(d.pipeline.monitors) == {"m", "m3"}
    snap = d.pipeline.telemetry.snapshot()
    assert "m2" not in snap.events_total and "m2" not in snap.evaluations
    assert not any(k[0] == "m2" for k in snap.alert_active)
    assert snap.events_total["m3"] == 0
    assert d.pipeline.alerts["m3"].lineage is not None
    d.pipeline.apply(records(events(5, 50, model="m2") + events(6, 40, model="m3")))
    snap = d.pipeline.telemetry.snapshot()
    assert snap.invalid_total == {"unknown_model": 50} and snap.events_total["m3"] == 40
    d.pipeline.evaluate(T0 + 1)
    assert "m2" not in d.pipeline.telemetry.snapshot().evaluations
    assert "m2" not in d.status()["models"]


class SwapOnFirstEntry:
    """The pipeline's evaluation lock, with a reload landing just before a round takes it."""

    def __init__(self, lock: Any, swap: Any) -> None:
        self.lock, self.swap = lock, swap

    def __enter__(self) -> Any:
        if self.swap is not None:
            swap, self.swap = self.swap, None
            swap()
        return self.lock.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self.lock.__exit__(*exc)


def test_an_evaluation_round_started_before_a_reload_skips_replaced_models(tmp_path, caplog):
    cfg = base_config(tmp_path)
    path = write(tmp_path / "c.yaml", cfg)
    config = load_config(path)
    pipe = build_pipeline(config)
    pipe.apply(records(events(1, 300, model="m") + events(2, 300, model="m2")))
    cfg["models"] = cfg["models"][:1]
    write(path, cfg)
    plan = plan_reload(path, config, pipe, reference_digests(config))
    pipe._eval_lock = SwapOnFirstEntry(  # type: ignore[assignment]
        pipe._eval_lock, lambda: pipe.adopt(plan.pipeline, plan.keep, None)
    )
    with caplog.at_level(logging.ERROR):
        assert pipe.evaluate(T0) == []  # the round's models were all replaced or dropped
    assert caplog.records == []
    assert "m2" not in pipe.telemetry.snapshot().evaluations
    assert [ev.model for ev, _ in pipe.evaluate(T0)] == ["m"]
    assert pipe.monitors["m"].window.events == 300


class FakeSource:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []
        self.commits: list[dict[Any, int]] = []

    def partitions(self, topic: str) -> int:
        return 1

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.seeks.append((topic, partition, offset))

    def position(self, topic: str, partition: int) -> int:
        return 0

    def commit(self, offsets: dict[Any, int]) -> bool:
        self.commits.append(offsets)
        return True


def owning(pipe: Any, store: FileStore) -> Partitions:
    parts = Partitions(pipe, FakeSource(), store, "p", None, {("p", 0)})
    parts.assigned(frozenset({("p", 0)}))
    return parts


def test_checkpoints_after_a_reload_restore_at_the_next_start(tmp_path):
    cfg = base_config(tmp_path)
    path = write(tmp_path / "c.yaml", cfg)
    config = load_config(path)
    store = FileStore(tmp_path / "cp")
    pipe = build_pipeline(config)
    parts = owning(pipe, store)
    checkpointer = Checkpointer(parts, parts.source, 3600)  # type: ignore[arg-type]
    pipe.apply(records(events(1, 500, model="m") + events(2, 500, model="m2")))
    parts.advance([])
    assert checkpointer.now()
    # reload: m2's window changes, so its fingerprint does
    cfg["models"][1]["window"] = {"events": 700}
    write(path, cfg)
    plan = plan_reload(path, config, pipe, reference_digests(config))
    pipe.adopt(plan.pipeline, plan.keep, parts.models_owned(plan.pipeline.monitors))
    pipe.apply(records(events(3, 100, model="m2"), start=1000))
    assert checkpointer.now()
    # the next start, with the new config: nothing refused, both states back
    again = build_pipeline(plan.config)
    owning(again, store)
    assert again.monitors["m"].window.events == 500
    assert again.monitors["m2"].window.events == 100


def test_a_checkpoint_from_before_the_reload_starts_a_relaid_model_empty(tmp_path, caplog):
    cfg = base_config(tmp_path)
    path = write(tmp_path / "c.yaml", cfg)
    config = load_config(path)
    store = FileStore(tmp_path / "cp")
    old = build_pipeline(config)
    parts = owning(old, store)
    old.apply(records(events(1, 500, model="m") + events(2, 500, model="m2")))
    parts.forget_saved()
    parts.capture().write()  # written before the reload, under m2's old layout
    cfg["models"][1]["window"] = {"events": 700}
    write(path, cfg)
    plan = plan_reload(path, config, old, reference_digests(config))

    refusing = Partitions(plan.pipeline, FakeSource(), store, "p", None, {("p", 0)})
    with pytest.raises(CheckpointError, match="model m2"):
        refusing.assigned(frozenset({("p", 0)}))

    fresh = build_pipeline(plan.config)
    tolerant = Partitions(fresh, FakeSource(), store, "p", None, {("p", 0)})
    tolerant.mark_relaid(["m2"])
    with caplog.at_level(logging.INFO, logger="driftwatch.partitions"):
        tolerant.assigned(frozenset({("p", 0)}))
    assert "model m2: its checkpoint predates the config reload" in caplog.text
    assert fresh.monitors["m"].window.events == 500
    assert fresh.monitors["m2"].window.events == 0
    # and the partition was checkpointed again at once, under the new layout
    again = build_pipeline(plan.config)
    owning(again, store)
    assert again.monitors["m"].window.events == 500


def test_sighup_only_asks_the_poll_loop_to_reload(setup):
    d, _, _ = setup
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        d.install_signal_handlers()
        os.kill(os.getpid(), signal.SIGHUP)
        assert d.reload_event.wait(5)
        assert not d.stop_event.is_set()
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def test_config_metrics_at_start(setup):
    d, _, _ = setup
    assert metric(d, "driftwatch_config_last_reload_success") == 1
    assert metric(d, "driftwatch_config_reload_failures_total") == 0
    assert metric(d, "driftwatch_config_last_reload_success_timestamp_seconds") > 0


def test_a_changed_evaluation_interval_reschedules_and_evaluates_at_once(setup):
    from apscheduler.schedulers.background import BackgroundScheduler

    d, path, cfg = setup
    d.scheduler = BackgroundScheduler(daemon=True)
    d.scheduler.add_job(lambda: None, "interval", seconds=100, id="evaluate")
    d.scheduler.start(paused=True)
    try:
        cfg["evaluation"]["interval_seconds"] = 7
        write(path, cfg)
        assert d.reload()
        job = d.scheduler.get_job("evaluate")
        assert job.trigger.interval.total_seconds() == 7
        assert (job.next_run_time - datetime.now(timezone.utc)).total_seconds() < 1
    finally:
        d.scheduler.shutdown(wait=False)


def test_a_restarted_model_is_remembered_across_a_crash_before_its_checkpoint(setup):
    """The reload writes which models it restarted, with their new layout: a process that
    dies before checkpointing that layout must, at the next start with the same config,
    restart those windows from the older checkpoints instead of refusing them (exit 3)."""
    d, path, cfg = setup
    reference_frame(seed=9, n=3000).to_csv(path.parent / "ref2.csv", index=False)
    cfg["models"][1]["reference"] = "ref2.csv"
    write(path, cfg)
    assert d.reload()
    recorded = orjson.loads((d.config.state.path / "relaid.json").read_bytes())
    assert recorded == {"m2": d.pipeline.monitors["m2"].fingerprint}
    again = Daemon(load_config(path), config_path=path)
    try:
        assert again._relaid_on_disk() == ["m2"]
        # a later config with yet another reference: the record no longer applies
        reference_frame(seed=10, n=3000).to_csv(path.parent / "ref3.csv", index=False)
        cfg["models"][1]["reference"] = "ref3.csv"
        write(path, cfg)
        third = Daemon(load_config(path), config_path=path)
        try:
            assert third._relaid_on_disk() == []
        finally:
            third.outbox.close()
    finally:
        again.outbox.close()


# -- readiness and shutdown of the daemon's parts ------------------------------------------
class _Part:
    def __init__(self, alive: bool = True, fail: bool = False) -> None:
        self.alive = alive
        self.fail = fail
        self.closed = False

    def close(self) -> None:
        self.closed = True
        if self.fail:
            raise RuntimeError("broker gone")

    stop = close


def test_readyz_is_503_once_the_re_keying_stage_has_stopped(setup):
    d, _, _ = setup
    d.joined = True
    assert d.readiness()[0]
    d.repartitioner = _Part(alive=False)
    ok, why = d.readiness()
    assert not ok and "re-keying" in why


def test_one_part_failing_to_close_does_not_skip_the_others(setup, caplog):
    d, _, _ = setup
    source = _Part(fail=True)  # a consumer whose close raises (dead broker)
    d.repartitioner = _Part(fail=True)
    closer = _Part(fail=True)
    d._closers.append(closer.close)
    d._close(source)
    assert source.closed and d.repartitioner.closed and closer.closed
    with pytest.raises(OutboxError):  # the outbox was closed
        d.outbox.counts()
    assert caplog.text.count("shutting down: closing") == 3
    with pytest.raises(OSError):  # the HTTP server was stopped: nothing answers
        http_get(f"http://127.0.0.1:{d.http.port}/healthz", timeout=1)
