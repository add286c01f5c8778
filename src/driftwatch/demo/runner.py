"""Orchestrates ``driftwatch demo``."""

from __future__ import annotations

import base64
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from driftwatch.config import parse_config
from driftwatch.demo import synthetic
from driftwatch.demo.broker import Broker
from driftwatch.demo.receiver import Receiver

DEMO_YAML = Path(__file__).with_name("demo.yaml")
SECRET_ENV = "DRIFTWATCH_WEBHOOK_SECRET"


def _say(text: str) -> None:
    print(text, flush=True)


def produce(
    bootstrap: str, topic: str, rate: float, drift_after: float, stop: threading.Event
) -> None:
    from driftwatch.sources.kafka import JsonProducer

    producer = JsonProducer([bootstrap])
    rng = np.random.default_rng(2026)
    started = time.monotonic()
    sent = 0
    announced = False
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - started
            drifted = elapsed >= drift_after
            if drifted and not announced:
                _say(
                    f"[producer] {elapsed:.0f}s: drift starts now (income x1.5, regions reshuffled)"
                )
                announced = True
            due = int(elapsed * rate) - sent
            if due > 0:
                for ev in synthetic.events(rng, due, drifted, sent, time.time()):
                    producer.send(topic, synthetic.MODEL, orjson.dumps(ev))
                sent += due
                producer.flush()
            stop.wait(0.1)
    finally:
        producer.close()


def demo_config(workdir: Path, bootstrap: str, port: int, webhook_url: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEMO_YAML.read_text())
    data["kafka"]["bootstrap_servers"] = [bootstrap]
    data["http"]["port"] = port
    data["state"]["path"] = str(workdir / "state")
    data["webhooks"]["retrain"]["url"] = webhook_url
    data["models"][0]["reference"] = str(workdir / "demo-reference.csv")
    return data


def demo(duration: float | None, port: int, drift_after: float, rate: float) -> int:
    from driftwatch.daemon import Daemon

    secret = os.environ.get(SECRET_ENV) or "whsec_" + base64.b64encode(os.urandom(24)).decode()
    os.environ[SECRET_ENV] = secret
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="driftwatch-demo-") as tmp, Broker() as broker:
        workdir = Path(tmp)
        synthetic.reference_frame().to_csv(workdir / "demo-reference.csv", index=False)

        def on_message(body: dict[str, Any], verified: bool) -> None:
            mark = "signature verified" if verified else "SIGNATURE DID NOT VERIFY"
            what = f"{body.get('type')} model={body.get('model')} rule={body.get('rule')}"
            _say(f"[webhook] {what} ({mark})")
            _say("          " + orjson.dumps(body).decode())

        receiver = Receiver(secret, on_message).start()
        config = parse_config(demo_config(workdir, broker.bootstrap, port, receiver.url), workdir)
        daemon = Daemon(config)
        base = f"http://{config.http.host}:{daemon.http.port}"
        _say(f"driftwatch demo: open {base}/ in a browser (the live page)")
        _say(f"  metrics: {base}/metrics   status: {base}/status   ready: {base}/readyz")
        _say(f"  broker {broker.bootstrap}, webhook receiver {receiver.url}")
        _say(
            f"  {rate:g} events/s for model {synthetic.MODEL}; drift starts after {drift_after:g}s."
            " Watch:  curl -s " + base + "/metrics | grep driftwatch_feature_psi"
        )
        _say("  Ctrl-C to stop." if duration is None else f"  stopping after {duration:g}s.")
        producer = threading.Thread(
            target=produce,
            args=(broker.bootstrap, config.kafka.prediction_topic, rate, drift_after, stop),
            daemon=True,
        )
        producer.start()
        if duration is not None:
            threading.Timer(duration, daemon.stop_event.set).start()
        daemon.install_signal_handlers()

        def report() -> None:
            while not daemon.stop_event.wait(10):
                for name, model in daemon.status()["models"].items():
                    ev = model["evaluation"]
                    if ev:
                        psi = ", ".join(
                            f"{f['feature']}={f['psi']:.3f}"
                            for f in ev["features"]
                            if f["psi"] is not None
                        )
                        firing = [r for r, on in model["alerts"].items() if on]
                        _say(
                            f"[status] {name}: {ev['window']['events']} events in window; "
                            f"psi {psi}; alerts firing: {', '.join(firing) or 'none'}"
                        )

        threading.Thread(target=report, daemon=True).start()
        try:
            code = daemon.run()
        finally:
            stop.set()
            producer.join(5)
            receiver.stop()
    sys.stdout.flush()
    return code
