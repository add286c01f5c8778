"""A broker outage mid-stream: the Tansu process is frozen (SIGSTOP) for 20 s, then resumed.

The daemon must stay up, say what is wrong while it lasts (``/readyz`` 503 naming the broker,
``driftwatch_kafka_broker_up 0``, a growing contact age), resume by itself, count every event
exactly once (the same statistics as an uninterrupted run) and deliver each notification
exactly once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from driftwatch.demo.broker import Broker
from tests.helpers import WebhookServer, events, http_get, sample, wait_for
from tests.integration.conftest import DaemonProcess, daemon_config, freeze, thaw
from tests.integration.test_daemon import counted, create_topic, produce
from tests.integration.test_recovery import final_state

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 20.0
#: the daemon declares the broker down after max(session timeout 6 s, 5 s) without contact
DOWN_AFTER_SECONDS = 6.0


def before_outage() -> list[dict[str, Any]]:
    """Stable, then two of four features drift: feature_drift fires (2/4 < share 0.75)."""
    return events(71, 1000) + events(72, 1000, shift=("x2", "color"), start=1000)


def after_outage() -> list[dict[str, Any]]:
    """Three of four features drift: dataset_drift fires as well (3/4 >= share 0.75)."""
    return events(73, 1000, shift=("x1", "x2", "color"), start=2000)


def outage_config(b: Broker, workdir: Path, topic: str, hook_url: str | None) -> dict[str, Any]:
    workdir.mkdir(exist_ok=True)
    webhooks = {}
    if hook_url is not None:
        webhooks["retrain"] = {
            "url": hook_url,
            "timeout_seconds": 2,
            "backoff_initial_seconds": 0.2,
            "backoff_max_seconds": 1,
        }
    cfg = daemon_config(b, workdir, topic, webhooks=webhooks)
    cfg["models"][0]["webhooks"] = list(webhooks)
    return cfg


def start_daemon(cfg: dict[str, Any], workdir: Path, daemons: list[DaemonProcess]) -> DaemonProcess:
    d = DaemonProcess(cfg, workdir)
    daemons.append(d)
    return d.start()


def readyz(d: DaemonProcess) -> tuple[int, str]:
    code, body = http_get(d.base + "/readyz")
    return code, body.decode()


def broker_gauges(d: DaemonProcess) -> tuple[Any, Any]:
    """(driftwatch_kafka_broker_up, driftwatch_kafka_broker_contact_age_seconds)"""
    text = d.metrics()
    return (
        sample(text, "driftwatch_kafka_broker_up"),
        sample(text, "driftwatch_kafka_broker_contact_age_seconds"),
    )


def broker_down(d: DaemonProcess) -> tuple[str, float] | None:
    """(the /readyz reason, the contact age) once both /readyz and the gauge say it."""
    code, why = readyz(d)
    up, age = broker_gauges(d)
    if code == 503 and "no contact with the Kafka broker" in why and up == 0:
        return why, age
    return None


def observe_outage(d: DaemonProcess, frozen_at: float) -> None:
    """While the broker is frozen: the daemon stays up and says what is wrong."""
    why, age = wait_for(
        lambda: d.alive() and broker_down(d),
        DOWN_AFTER_SECONDS + 8,
        what=f"/readyz 503 naming the broker and driftwatch_kafka_broker_up 0 (log: {d.log})",
    )
    assert "consumption resumes by itself" in why
    assert age >= DOWN_AFTER_SECONDS - 1
    time.sleep(3)
    assert d.alive()
    later = broker_down(d)
    assert later is not None, "the broker was reported back while it is still frozen"
    assert later[1] > age, (age, later)  # the contact age keeps growing
    time.sleep(max(0.0, frozen_at + OUTAGE_SECONDS - time.monotonic()))
    assert d.alive() and broker_down(d) is not None


def assert_delivered_once(hook: WebhookServer, d: DaemonProcess, rules: list[str]) -> None:
    """Each notification exactly once: no id sent twice, none lost, nothing left over."""
    keys = Counter(r["headers"]["Idempotency-Key"] for r in hook.requests)
    doubled = {k: n for k, n in keys.items() if n > 1}
    assert not doubled, f"sent more than once: {doubled}"
    assert sorted(b["rule"] for b in hook.bodies()) == sorted(rules)
    assert len(hook.requests) == len(keys) == len(rules)
    assert all(
        r["headers"]["Idempotency-Key"] == b["id"]
        for r, b in zip(hook.requests, hook.bodies(), strict=True)
    )
    code, body = http_get(d.base + "/status")
    assert code == 200 and json.loads(body)["webhooks"] == {
        "pending_count": 0,
        "failed_count": 0,
        "pending": [],
        "failed": [],
    }
    delivered = sample(
        d.metrics(), "driftwatch_webhook_deliveries_total", webhook="retrain", outcome="success"
    )
    assert delivered == len(rules)


def test_broker_frozen_20s_mid_stream_daemon_reports_and_resumes_exactly(
    private_broker, topic, tmp_path, daemons
):
    b = private_broker
    create_topic(b, topic)
    first, rest = before_outage(), after_outage()
    total = len(first) + len(rest)
    started = time.monotonic()
    with WebhookServer() as hook:
        d = start_daemon(outage_config(b, tmp_path / "d", topic, hook.url), tmp_path / "d", daemons)
        assert broker_gauges(d)[0] == 1

        produce(b, topic, [orjson.dumps(e) for e in first])
        wait_for(counted(d, len(first)), 30, what=f"{len(first)} events before the outage")
        wait_for(lambda: hook.requests, 15, what="the feature_drift notification")
        # Freeze at once, mid-stream: the next checkpoint tick (every second) and its
        # synchronous offset commit meet the outage, as they would in production.
        freeze(b)
        frozen_at = time.monotonic()
        try:
            observe_outage(d, frozen_at)
        finally:
            thaw(b)
        thawed_at = time.monotonic()

        # the producer runs only once the broker answers again
        produce(b, topic, [orjson.dumps(e) for e in rest])
        wait_for(lambda: d.alive() and readyz(d)[0] == 200, 30, what=f"/readyz 200 ({d.log})")
        ready_in = time.monotonic() - thawed_at
        wait_for(lambda: broker_gauges(d)[0] == 1, 5, what="driftwatch_kafka_broker_up 1")
        wait_for(counted(d, total), 30, what=f"all {total} events counted after the outage")
        resumed_in = time.monotonic() - thawed_at

        # the same input, uninterrupted: a second daemon in another group
        ref_cfg = outage_config(b, tmp_path / "ref", topic, None)
        ref_cfg["kafka"]["group_id"] = f"reference-{topic}"
        ref = start_daemon(ref_cfg, tmp_path / "ref", daemons)

        wait_for(
            lambda: {n["rule"] for n in hook.bodies()} == {"feature_drift", "dataset_drift"},
            20,
            what="the dataset_drift notification after the outage",
        )
        interrupted = final_state(d, {"m": total})
        assert interrupted == final_state(ref, {"m": total})
        assert interrupted["m"]["events_total"] == total
        assert sample(d.metrics(), "driftwatch_events_total", model="m") == total
        assert 1000 <= interrupted["m"]["window"] < 1010
        assert {f for f, _, _, drift in interrupted["m"]["features"] if drift} == {
            "x1",
            "x2",
            "color",
        }
        time.sleep(1)  # evaluations after the last event re-derive nothing new
        assert_delivered_once(hook, d, ["dataset_drift", "feature_drift"])
        log = d.log.read_text()
        assert "no contact with the Kafka broker" in log and "reachable again" in log
        assert d.stop() == 0 and ref.stop() == 0
    elapsed = time.monotonic() - started
    print(
        f"broker outage: ready {ready_in:.2f}s and all counted {resumed_in:.2f}s after SIGCONT;"
        f" {elapsed:.1f}s in all"
    )
    assert elapsed < 85
