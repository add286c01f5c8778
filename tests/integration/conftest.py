"""Integration fixtures: a real Tansu broker (session), and `driftwatch run` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftwatch.demo.broker import Broker, free_port
from tests.helpers import FEATURES, http_get, reference_frame, wait_for

FAST_GROUP = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 10000,
}


#: The same quick group settings in each library's own option names.
CLIENT = {
    "kafka-python": FAST_GROUP,
    "confluent": {
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 10000,
    },
}
#: The Kafka library the daemons of the running test use (see ``kafka_library``).
LIBRARY = {"name": "kafka-python"}


@pytest.fixture(params=["kafka-python", "confluent"])
def kafka_library(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per Kafka library (``kafka.library``): every daemon_config of the
    test uses it. Request it with ``@pytest.mark.usefixtures("kafka_library")``."""
    LIBRARY["name"] = request.param
    yield request.param
    LIBRARY["name"] = "kafka-python"


def freeze(b: Broker) -> None:
    """SIGSTOP the broker: connections stay open, nothing is answered (an outage that keeps
    its data, which this Tansu build's memory engine would lose on a restart)."""
    assert b.process is not None and b.process.poll() is None
    os.kill(b.process.pid, signal.SIGSTOP)


def thaw(b: Broker) -> None:
    """SIGCONT (harmless if it is not stopped), so it can also be terminated."""
    if b.process is not None and b.process.poll() is None:
        os.kill(b.process.pid, signal.SIGCONT)


@pytest.fixture
def private_broker() -> Iterator[Broker]:
    """A broker of this test's own: it gets frozen, which the session broker must never be."""
    b = Broker().start()
    try:
        yield b
    finally:
        thaw(b)
        b.stop()


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    with Broker() as b:
        yield b


class DaemonProcess:
    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None):
        self.config = config
        self.workdir = workdir
        self.path = workdir / f"config-{uuid.uuid4().hex[:6]}.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.port = config["http"]["port"]
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.log = workdir / f"daemon-{self.port}.log"

    def start(self, wait_ready: bool = True) -> DaemonProcess:
        self._log = self.log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "driftwatch", "run", "--config", str(self.path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            text=True,
        )
        if wait_ready:
            wait_for(
                lambda: self.alive() and http_get(self.base + "/readyz")[0] == 200,
                40,
                what=f"/readyz of {self.base} (log: {self.log})",
            )
        return self

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"daemon exited: {self.log.read_text()[-3000:]}")
        return True

    def metrics(self) -> str:
        code, body = http_get(self.base + "/metrics")
        assert code == 200
        return body.decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"daemon did not stop within {timeout}s") from None
        self._log.close()
        return rc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def daemon_config(broker: Broker, workdir: Path, topic: str, **over: Any) -> dict[str, Any]:
    ref = workdir / "reference.csv"
    if not ref.exists():
        reference_frame().to_csv(ref, index=False)
    cfg: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": [broker.bootstrap],
            "group_id": f"g-{topic}",
            "prediction_topic": topic,
            "library": LIBRARY["name"],
            "client": dict(CLIENT[LIBRARY["name"]]),
        },
        "http": {"host": "127.0.0.1", "port": free_port()},
        "state": {"path": str(workdir / "state"), "checkpoint_interval_seconds": 1},
        "evaluation": {"interval_seconds": 1},
        "webhooks": {},
        "models": [
            {
                "name": "m",
                "task": "classification",
                "reference": str(ref),
                "window": {"events": 1000},
                "features": dict(FEATURES),
                # share 0.75: two drifting features of four fire feature_drift, not dataset_drift
                "drift": {"method": "psi", "threshold": 0.2, "min_events": 200, "share": 0.75},
                "alerts": {"consecutive": 1, "cooldown_seconds": 3600},
                "webhooks": [],
            }
        ],
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


@pytest.fixture
def topic() -> str:
    return f"predictions-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.kill()


def eventually(fn: Any, timeout: float = 30, what: str = "condition") -> Any:
    return wait_for(fn, timeout, what=what)


def now() -> float:
    return time.time()
