"""The web page (CONTRACT section 11) in a real headless browser: the real daemon on the
real broker evaluates a model that drifts, then Debian's chromium loads ``GET /``, runs its
script (the strict Content-Security-Policy applies) and the DOM must show the figures that
``/metrics`` reports. Needs ``chromium``: ``scripts/ensure-chromium.sh`` installs it.

With ``DRIFTWATCH_SCREENSHOT=<path>`` the page's screenshot is copied there (that is how
``docs/page.png`` is made)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from driftwatch.demo import synthetic
from driftwatch.monitor.results import RULES
from tests.helpers import WebhookServer, http_get, sample, wait_for
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import create_topic, produce

MODEL = synthetic.MODEL
KEY = MODEL.encode()
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium(args: list[str], profile: Path, timeout: float = 90, budget_ms: int = 4000) -> bytes:
    """Run chromium once; its stdout. ``budget_ms``: the virtual time the page runs for (its
    timers: the refresh every 5 s; its fetches are real, and virtual time waits for them).
    It is killed (with the helpers it started, which share its process group) if it
    overruns ``timeout`` (generous: a loaded CI machine), and nothing of it outlives the
    call."""
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: run scripts/ensure-chromium.sh"
    log = (profile.parent / "chromium.log").open("ab")
    proc = subprocess.Popen(
        [
            binary,
            *FLAGS,
            f"--virtual-time-budget={budget_ms}",
            f"--user-data-dir={profile}",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,  # its own process group, led by its own pid
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # only if it or a helper is still there
        proc.wait(10)
        log.close()
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: see {log.name}"
    return out


class Elements(HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    def where(self, **attrs: str) -> list[dict[str, str]]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            a
            for _, a in self.found
            if all(a.get(k) == v or (v == "*" and k in a) for k, v in want.items())
        ]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def stream(
    rng: np.random.Generator, n: int, start: int, drifted: bool
) -> tuple[list[bytes], list[bytes]]:
    """``n`` predictions of the demo model (version v1, or v2 once drifted) and labels for
    60% of them: drawn from the scores, or coin flips after the drift (a concept change
    the score-based estimate cannot see)."""
    evs = synthetic.events(rng, n, drifted, start, time.time())
    labels = []
    for i, e in enumerate(evs):
        e["model_version"] = "v2" if drifted else "v1"
        if i % 50 == 0:
            del e["features"]["age"]  # 2% missing: reported, under the quality threshold
        if i % 5 < 3:
            p = 0.5 if drifted else e["score"]
            labels.append({"model": MODEL, "id": e["id"], "label": int(rng.random() < p)})
    return [orjson.dumps(e) for e in evs], [orjson.dumps(x) for x in labels]


def check_figures(page: Elements, metrics: str) -> None:
    """The DOM shows the model's window, each feature's PSI and drift, its alert states and
    its performance as ``metrics`` (the text of /metrics) reports them."""
    [body] = page.where(data_state="*")
    assert body["data-state"] == "ok", body
    assert int(body["data-refreshes"]) >= 1
    [card] = page.where(data_model=MODEL)
    events = sample(metrics, "driftwatch_window_events", model=MODEL)
    assert events == 2000 and card["data-window-events"] == "2000"
    rows = {a["data-feature"]: a for a in page.where(data_feature="*")}
    assert set(rows) == set(synthetic.FEATURES)
    drifting = set()
    for feature, row in rows.items():
        psi = sample(metrics, "driftwatch_feature_psi", model=MODEL, feature=feature)
        assert float(row["data-psi"]) == psi, feature  # exactly, not /status's rounding
        drift = sample(metrics, "driftwatch_feature_drift", model=MODEL, feature=feature)
        assert row["data-drift"] == ("true" if drift == 1 else "false"), feature
        if drift == 1:
            drifting.add(feature)
    assert drifting >= {"income", "region"} and "age" not in drifting
    chips = {a["data-rule"]: a["data-active"] for a in page.where(data_rule="*")}
    assert set(chips) == set(RULES)
    for rule in RULES:
        active = sample(metrics, "driftwatch_alert_active", model=MODEL, rule=rule)
        assert chips[rule] == ("true" if active == 1 else "false"), rule
    assert chips["feature_drift"] == chips["performance"] == "true"
    [perf] = page.where(data_kpi="performance")
    accuracy = sample(metrics, "driftwatch_model_performance", model=MODEL, metric="accuracy")
    assert perf["data-metric"] == "accuracy"
    assert abs(float(perf["data-current"]) - accuracy) <= 1e-6  # /status: 6 places
    [est] = page.where(data_kpi="estimated")
    estimated = sample(
        metrics, "driftwatch_model_performance_estimated", model=MODEL, metric="accuracy"
    )
    assert abs(float(est["data-estimated"]) - estimated) <= 1e-6
    [coverage] = page.where(data_kpi="label-coverage")
    labelled_now = sample(metrics, "driftwatch_window_labeled_events", model=MODEL)
    assert abs(float(coverage["data-label-coverage"]) - labelled_now / events) <= 1e-6
    assert {a["data-version"] for a in page.where(data_version="*")} == {"v1", "v2"}


def check_deliveries(page: Elements, status_before: bytes, status_after: bytes) -> None:
    """The receiver answers 503: the notifications wait in the outbox, as /status lists them."""
    [box] = page.where(data_webhooks_pending="*")
    pending = len(page.where(data_delivery="pending"))
    assert int(box["data-webhooks-pending"]) == pending >= 1
    assert box["data-webhooks-failed"] == "0"
    before = orjson.loads(status_before)["webhooks"]
    after = orjson.loads(status_after)["webhooks"]
    assert before["pending_count"] == len(before["pending"]) and before["failed_count"] == 0
    if before["pending_count"] == after["pending_count"]:  # (no alert fired meanwhile)
        assert pending == after["pending_count"]


def screenshot(url: str, tmp_path: Path) -> None:
    """A 1280x1600 screenshot of the page; copied to $DRIFTWATCH_SCREENSHOT if set."""
    shot = tmp_path / "page.png"
    chromium(["--window-size=1280,1600", f"--screenshot={shot}", url], tmp_path / "profile")
    data = shot.read_bytes()
    assert png_size(data) == (1280, 1600)
    assert len(data) > 50_000, "a blank page compresses to a few KB"
    target = os.environ.get("DRIFTWATCH_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)


def page_config(
    broker: Any, tmp_path: Path, topic: str, labels_topic: str, webhook_url: str
) -> dict[str, Any]:
    """The demo model with every rule the page shows: drift, performance measured and
    estimated, data quality, versions."""
    cfg = daemon_config(
        broker,
        tmp_path,
        topic,
        kafka={"label_topic": labels_topic},
        webhooks={"retrain": {"url": webhook_url, "timeout_seconds": 2}},
    )
    cfg["models"] = [
        {
            "name": MODEL,
            "task": "classification",
            "reference": str(tmp_path / "ref.csv"),
            "window": {"events": 2000},
            "features": dict(synthetic.FEATURES),
            "drift": {"method": "psi", "threshold": 0.2, "min_events": 500},
            "performance": {
                "metric": "accuracy",
                "max_drop": 0.05,
                "min_labels": 200,
                "estimate": True,
            },
            "quality": {"max_missing_ratio": 0.05, "max_out_of_range_ratio": 0.05},
            "versions": {"regression": {"metric": "accuracy", "max_drop": 0.05}},
            "alerts": {"consecutive": 1, "cooldown_seconds": 3600},
            "webhooks": ["retrain"],
        }
    ]
    return cfg


def test_the_page_shows_the_live_figures_of_metrics(broker, topic, tmp_path, daemons):
    labels_topic = f"labels-{topic}"
    create_topic(broker, topic)
    create_topic(broker, labels_topic)
    synthetic.reference_frame().to_csv(tmp_path / "ref.csv", index=False)
    rng = np.random.default_rng(5)
    with WebhookServer(script=[503] * 10_000) as hook:  # deliveries stay pending
        cfg = page_config(broker, tmp_path, topic, labels_topic, hook.url)
        d = DaemonProcess(cfg, tmp_path)
        daemons.append(d.start())

        sent = labelled = 0
        for batch in range(8):  # a few evaluations (1 s apart) per phase: a PSI history
            drifted = batch >= 4
            n = 300 if drifted else 500  # the window ends with 800 of v1, 1200 of v2
            preds, labels = stream(rng, n, sent, drifted)
            produce(broker, topic, preds, key=KEY)
            produce(broker, labels_topic, labels, key=KEY)
            sent, labelled = sent + n, labelled + len(labels)
            time.sleep(1.2)

        def consumed() -> bool:
            text = d.metrics()
            return bool(
                sample(text, "driftwatch_events_total", model=MODEL) == sent
                and sample(text, "driftwatch_labels_total", model=MODEL) == labelled
                and sample(text, "driftwatch_alert_active", model=MODEL, rule="feature_drift") == 1
            )

        wait_for(consumed, 60, what=f"{sent} events, {labelled} labels and feature_drift")
        settled = time.time()
        last = "driftwatch_last_evaluation_timestamp_seconds"
        wait_for(
            lambda: (sample(d.metrics(), last, model=MODEL) or 0) > settled + 0.5,
            30,
            what="an evaluation of the whole stream",
        )
        # the window no longer changes: every evaluation from here gives the same figures
        metrics = d.metrics()
        _, status_before = http_get(d.base + "/status")

        # (bounded by chromium()'s timeout, not by a wall-clock assertion: CI can be slow)
        dom = chromium(["--dump-dom", d.base + "/"], tmp_path / "profile").decode()
        _, status_after = http_get(d.base + "/status")

        page = Elements()
        page.feed(dom)
        check_figures(page, metrics)
        check_deliveries(page, status_before, status_after)
        assert hook.requests, "the notifications were attempted"
        # the charts were drawn: one sparkline and one bar chart per feature
        assert dom.count('class="spark"') == dom.count('class="bars"') == len(synthetic.FEATURES)

        screenshot(d.base + "/", tmp_path)
        assert d.stop() == 0
