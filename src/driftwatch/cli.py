"""The ``driftwatch`` command line (CONTRACT section 1)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from driftwatch import __version__
from driftwatch.config import Config, load_config
from driftwatch.errors import CheckpointError, ConfigError, DriftwatchError

EXIT_CONFIG = 2
EXIT_CHECKPOINT = 3
#: At ``driftwatch demo``'s default log level these say only warnings: partition
#: assignment, restores and a line per checkpoint (every 5 s), the estimator's calibration.
DEMO_QUIET_LOGGERS = ("driftwatch.partitions", "driftwatch.monitor.estimated")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="driftwatch",
        description="Drift and model-monitoring daemon: Kafka in, Prometheus and webhooks out.",
    )
    p.add_argument("--version", action="version", version=f"driftwatch {__version__}")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--config", required=True, type=Path)
    check = sub.add_parser("check-config", help="validate a config and its reference files")
    check.add_argument("--config", required=True, type=Path)
    demo = sub.add_parser(
        "demo", help="local broker + synthetic drifting events + webhook receiver"
    )
    demo.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    demo.add_argument("--port", type=int, default=9108, help="HTTP port of /metrics (0 = any free)")
    demo.add_argument(
        "--drift-after", type=float, default=20.0, help="seconds before the drift starts"
    )
    demo.add_argument("--rate", type=float, default=400.0, help="events per second")
    prod = sub.add_parser(
        "produce-demo", help="only the demo's producer: synthetic events that drift, to a broker"
    )
    prod.add_argument("--bootstrap", required=True, help="host:port of a Kafka broker")
    prod.add_argument("--topic", default="predictions")
    prod.add_argument("--rate", type=float, default=200.0, help="events per second")
    prod.add_argument("--drift-after", type=float, default=300.0, help="seconds before the drift")
    rep = sub.add_parser("replay", help="the pipeline over a JSON-lines file of events")
    rep.add_argument("--config", required=True, type=Path)
    rep.add_argument("--input", required=True, type=Path)
    bt = sub.add_parser(
        "backtest",
        help="score the rules against known change points of a JSON-lines history",
    )
    bt.add_argument("--config", required=True, type=Path)
    bt.add_argument("--input", required=True, type=Path)
    bt.add_argument(
        "--changes",
        type=Path,
        default=None,
        help="ids of the first events after known changes: one a line, or a JSON array "
        '(besides lines with "change": true)',
    )
    bt.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    return p


def _config_errors(exc: ConfigError) -> int:
    print("driftwatch: invalid configuration:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_CONFIG


def _summary(cfg: Config) -> str:
    lines = [
        f"kafka: {', '.join(cfg.kafka.bootstrap_servers)} group={cfg.kafka.group_id} "
        f"predictions={cfg.kafka.prediction_topic}"
        + (f" dead-letters={cfg.kafka.dead_letter_topic}" if cfg.kafka.dead_letter_topic else ""),
        f"http: {cfg.http.host}:{cfg.http.port}   state: {cfg.state.path}   "
        f"evaluation every {cfg.evaluation.interval_seconds:g}s",
    ]
    for name, hook in cfg.webhooks.items():
        lines.append(
            f"webhook {name}: {hook.format} {hook.url}" + (" (signed)" if hook.secret_env else "")
        )
    for m in cfg.models:
        window = f"{m.window.events} events" if m.window.events else f"{m.window.seconds:g}s"
        lines.append(
            f"model {m.name}: {m.task}, {len(m.features)} features, window {window}, "
            f"drift {m.drift.method} threshold {m.drift.threshold:g}, reference {m.reference.name}"
        )
    return "\n".join(lines)


def check_config(path: Path) -> int:
    from driftwatch.app import build_monitor, ingest_token, webhook_targets

    try:
        cfg = load_config(path)
        from driftwatch.sources.clients import client_problems

        problems = client_problems(cfg.kafka)
        if problems:
            raise ConfigError(problems)
        webhook_targets(cfg)  # secrets, tokens: set and usable, as `run` requires
        ingest_token(cfg)
        for m in cfg.models:
            build_monitor(m, cfg.kafka.label_topic is not None)
    except ConfigError as exc:
        return _config_errors(exc)
    except DriftwatchError as exc:
        print(f"driftwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(_summary(cfg))
    print("config OK")
    return 0


def run(path: Path) -> int:
    from driftwatch.daemon import Daemon

    try:
        daemon = Daemon(load_config(path), config_path=path)
    except ConfigError as exc:
        return _config_errors(exc)
    except DriftwatchError as exc:
        print(f"driftwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    daemon.install_signal_handlers()
    try:
        return daemon.run()
    except ConfigError as exc:  # found only once the broker answers (e.g. partition counts)
        return _config_errors(exc)
    except CheckpointError as exc:
        print(f"driftwatch: refusing to start from a bad checkpoint: {exc}", file=sys.stderr)
        print(
            "  the state was not reset. To start this partition empty, move its checkpoint file"
            f" out of {daemon.config.state.path / 'checkpoints'} (state.backend: file), or restore"
            " a backup of it; see README 'Deployment and scaling'.",
            file=sys.stderr,
        )
        return EXIT_CHECKPOINT


def replay_cmd(config: Path, source: Path) -> int:
    from driftwatch.replay import replay_file

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        return _config_errors(exc)
    if not source.exists():
        print(f"driftwatch: --input {source}: file not found", file=sys.stderr)
        return EXIT_CONFIG

    def emit(line: dict[str, Any]) -> None:
        sys.stdout.write(orjson.dumps(line).decode() + "\n")

    try:
        pipeline = replay_file(cfg, source, emit)
    except DriftwatchError as exc:
        print(f"driftwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    invalid = pipeline.telemetry.snapshot().invalid_total
    if invalid:
        print(f"driftwatch: skipped invalid records: {dict(invalid)}", file=sys.stderr)
    return 0


def backtest_cmd(config: Path, source: Path, changes: Path | None, as_json: bool) -> int:
    from driftwatch.backtest import backtest, format_table, read_change_ids

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        return _config_errors(exc)
    for flag, path in (("--input", source), ("--changes", changes)):
        if path is not None and not path.exists():
            print(f"driftwatch: {flag} {path}: file not found", file=sys.stderr)
            return EXIT_CONFIG
    if not source.is_file():  # a pipe would be empty the second time
        print(
            f"driftwatch: --input {source}: not a regular file (backtest reads it twice: "
            "change points, then the replay)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        ids = [] if changes is None else read_change_ids(changes)
        report = backtest(cfg, source, ids)
    except DriftwatchError as exc:
        print(f"driftwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for ident in report.unmatched:
        print(f"driftwatch: --changes: id {ident!r} matches no valid prediction", file=sys.stderr)
    if report.invalid:
        print(f"driftwatch: skipped invalid records: {report.invalid}", file=sys.stderr)
    if as_json:
        sys.stdout.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(format_table(report))
    return 0


def produce_demo(bootstrap: str, topic: str, rate: float, drift_after: float) -> int:
    import signal
    import threading

    from driftwatch.demo.runner import produce

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"producing {rate:g} events/s to {bootstrap} topic {topic}; drift after {drift_after:g}s")
    produce(bootstrap, topic, rate, drift_after, stop)
    return 0


def configure_logging(command: str, level: str) -> None:
    """The root logger at ``level`` (a name: ``INFO``...), the chatty libraries at WARNING."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(max(logging.WARNING, getattr(logging, level)))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if command == "demo" and level == "INFO":
        # the demo shows what a person follows (drift, alerts, webhooks, its status lines),
        # not the bookkeeping an operator's log keeps; --log-level DEBUG shows everything
        for name in DEMO_QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.command, args.log_level)
    if args.command == "check-config":
        return check_config(args.config)
    if args.command == "run":
        return run(args.config)
    if args.command == "replay":
        return replay_cmd(args.config, args.input)
    if args.command == "backtest":
        return backtest_cmd(args.config, args.input, args.changes, args.json)
    if args.command == "produce-demo":
        return produce_demo(args.bootstrap, args.topic, args.rate, args.drift_after)
    from driftwatch.demo.runner import demo

    return demo(args.duration, args.port, args.drift_after, args.rate)
