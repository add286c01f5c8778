"""Shared test helpers: synthetic streams, metric parsing, a controllable webhook receiver."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from prometheus_client.parser import text_string_to_metric_families

from driftwatch.demo.broker import free_port

FEATURES = {"x1": "numerical", "x2": "numerical", "x3": "numerical", "color": "categorical"}
COLORS = ["red", "green", "blue"]


def columns(rng: np.random.Generator, n: int, shift: tuple[str, ...] = ()) -> dict[str, Any]:
    """Seeded columns; features named in ``shift`` move far from the reference."""
    cols: dict[str, Any] = {
        "x1": rng.normal(0, 1, n) + (2.0 if "x1" in shift else 0.0),
        "x2": rng.exponential(2.0, n) * (3.0 if "x2" in shift else 1.0),
        "x3": np.round(rng.normal(40, 10, n)),
        "color": rng.choice(COLORS, n, p=[0.1, 0.2, 0.7] if "color" in shift else [0.5, 0.3, 0.2]),
    }
    # predictions independent of the features: shifting features does not move them
    cols["prediction"] = rng.integers(0, 2, n)
    return cols


def reference_frame(seed: int = 1, n: int = 4000) -> pd.DataFrame:
    return pd.DataFrame(columns(np.random.default_rng(seed), n))


def events(
    seed: int,
    n: int,
    model: str = "m",
    shift: tuple[str, ...] = (),
    start: int = 0,
    t0: float = 1_790_000_000.0,
) -> list[dict[str, Any]]:
    cols = columns(np.random.default_rng(seed), n, shift)
    return [
        {
            "model": model,
            "id": f"e-{start + i}",
            "timestamp": t0 + start + i,
            "features": {
                "x1": float(cols["x1"][i]),
                "x2": float(cols["x2"][i]),
                "x3": float(cols["x3"][i]),
                "color": str(cols["color"][i]),
            },
            "prediction": int(cols["prediction"][i]),
        }
        for i in range(n)
    ]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(text: str, name: str, **labels: str) -> Any:
    """The sample's value, or None when it is not exported."""
    return samples(text).get((name, tuple(sorted(labels.items()))))


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.25, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except OSError:
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class WebhookServer:
    """A real HTTP receiver on 127.0.0.1. ``script`` lists behaviours for successive
    requests: an int status, ("status", headers), or "hang" (sleep past the timeout);
    after the script runs out it answers 200."""

    def __init__(
        self, script: list[Any] | None = None, hang_seconds: float = 3.0, port: int = 0
    ) -> None:
        self.script = list(script or [])
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server.lock:
                    step = server.script.pop(0) if server.script else 200
                    server.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": body,
                            "answered": step,
                        }
                    )
                if step == "hang":
                    time.sleep(hang_seconds)
                    step = 200
                status, headers = (step, {}) if isinstance(step, int) else step
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks/retrain"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]


# -- Prometheus and Alertmanager processes (Debian's packages; scripts/ensure-*.sh) ---------
def executable(*names: str, hint: str) -> str:
    """The first of ``names`` on PATH; else fail saying how to get it (``hint``)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError(f"{names[0]} is missing: {hint}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process a test started, by its own PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_ready(
    args: list[str], port: int, log: Path, what: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server answering ``GET /-/ready`` on 127.0.0.1:``port`` (Prometheus,
    Alertmanager), its output in ``log``; wait until ready (stopped if it never is)."""
    with log.open("wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: proc.poll() is None and http_get(base + "/-/ready")[0] == 200,
            30,
            what=f"{what} ready (log {log})",
        )
    except AssertionError:
        stop_process(proc)
        raise
    return proc, base


def start_prometheus(
    workdir: Path, target: str, rules: Path, alertmanager: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A private Prometheus scraping ``target`` every second with ``rules``, sending its
    alerts to ``alertmanager`` (a base URL) if given; (process, base URL)."""
    exe = executable("prometheus", hint="run scripts/ensure-promtool.sh")
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "driftwatch", "static_configs": [{"targets": [target]}]}],
    }
    if alertmanager is not None:
        am = alertmanager.split("//")[1]
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    args = [
        exe,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return start_ready(args, port, workdir / "prometheus.log", "prometheus")


def start_alertmanager(workdir: Path, config: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private Alertmanager (no gossip port) with ``config``; (process, base URL)."""
    exe = executable(
        "alertmanager", "prometheus-alertmanager", hint="run scripts/ensure-alertmanager.sh"
    )
    port = free_port()
    args = [
        exe,
        f"--config.file={config}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port: a single, private instance
    ]
    return start_ready(args, port, workdir / "alertmanager.log", "alertmanager")
