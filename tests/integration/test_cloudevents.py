"""KServe payload logs (CloudEvents) through the real broker and daemon (CONTRACT section 12).

Records are written the way Knative's KafkaSink writes KServe's logger events: binary
content mode (``ce_*`` headers, value = the request or response body) or structured mode,
on any partition (not keyed by model), responses sometimes before their requests. The
daemon re-keys them by model (``repartition``) and joins each request to its response.
"""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from driftwatch.demo.broker import free_port
from tests.helpers import FEATURES, WebhookServer, columns, sample, wait_for
from tests.integration.conftest import DaemonProcess, daemon_config
from tests.integration.test_daemon import create_topic

SERVICE = "credit-default"
ORDER = ["x1", "x2", "x3", "color"]
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"


def rows(seed: int, n: int, shift: tuple[str, ...] = ()) -> list[list[Any]]:
    cols = columns(np.random.default_rng(seed), n, shift)
    return [
        [float(cols["x1"][i]), float(cols["x2"][i]), float(cols["x3"][i]), str(cols["color"][i])]
        for i in range(n)
    ]


def v1_request(batch: list[list[Any]]) -> dict[str, Any]:
    return {"instances": batch}


def v2_request(batch: list[list[Any]]) -> dict[str, Any]:
    n = len(batch)
    return {
        "id": "r",
        "inputs": [
            {"name": f, "shape": [n], "datatype": "BYTES" if f == "color" else "FP64",
             "data": [row[j] for row in batch]}
            for j, f in enumerate(ORDER)
        ],
    }  # fmt: skip


def v1_response(preds: list[int]) -> dict[str, Any]:
    return {"predictions": preds}


def v2_response(preds: list[int]) -> dict[str, Any]:
    return {
        "model_name": SERVICE,
        "model_version": "v7",
        "outputs": [{"name": "predict", "shape": [len(preds)], "datatype": "INT64", "data": preds}],
    }


def rfc3339(t: float) -> str:
    """KServe's ``ce_time``: RFC 3339 with nanoseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def binary(ce_id: str, kind: str, body: dict[str, Any]) -> tuple[list[tuple[str, bytes]], bytes]:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", ce_id.encode()),
        ("ce_type", (REQUEST if kind == "request" else RESPONSE).encode()),
        ("ce_source", b"http://localhost:9081/"),
        ("ce_inferenceservicename", SERVICE.encode()),
        ("ce_namespace", b"models"),
        ("ce_component", b"predictor"),
        ("ce_endpoint", b""),
        ("ce_time", rfc3339(time.time()).encode()),
        ("content-type", b"application/json"),
    ]
    return headers, orjson.dumps(body)


def structured(
    ce_id: str, kind: str, body: dict[str, Any]
) -> tuple[list[tuple[str, bytes]], bytes]:
    event = {
        "specversion": "1.0",
        "id": ce_id,
        "type": REQUEST if kind == "request" else RESPONSE,
        "source": "http://localhost:9081/",
        "inferenceservicename": SERVICE,
        "datacontenttype": "application/json",
        "data": body,
    }
    return [("content-type", b"application/cloudevents+json")], orjson.dumps(event)


def traffic(
    seed: int, requests: int, per_request: int, shift: tuple[str, ...] = ()
) -> Iterator[tuple[list[tuple[str, bytes]], bytes]]:
    """KServe v1 and v2 request/response pairs, binary and structured, every third pair
    with its response first. Yields (headers, value) records."""
    data = rows(seed, requests * per_request, shift)
    rng = np.random.default_rng(seed + 1)
    for r in range(requests):
        batch = data[r * per_request : (r + 1) * per_request]
        preds = [int(p) for p in rng.integers(0, 2, len(batch))]
        ce_id = f"{seed}-{r}-{uuid.uuid4().hex[:6]}"
        v2 = r % 2 == 1
        wrap = structured if r % 5 == 4 else binary
        req = wrap(ce_id, "request", v2_request(batch) if v2 else v1_request(batch))
        resp = wrap(ce_id, "response", v2_response(preds) if v2 else v1_response(preds))
        yield from ((resp, req) if r % 3 == 0 else (req, resp))


def send(broker: Any, topic: str, records: Any, partitions: int = 3) -> int:
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], linger_ms=5)
    n = 0
    for i, (headers, value) in enumerate(records):
        # unkeyed, spread over every partition (KafkaSink keys by nothing in particular)
        producer.send(topic, value=value, headers=headers, partition=i % partitions)
        n += 1
    producer.flush()
    producer.close()
    return n


def ce_config(broker: Any, tmp_path: Any, topic: str, **over: Any) -> dict[str, Any]:
    cfg = daemon_config(broker, tmp_path, topic, **over)
    cfg["kafka"]["format"] = "cloudevents"
    cfg["kafka"]["dead_letter_topic"] = f"dead-{topic}"
    model = cfg["models"][0]
    model["inference_service"] = SERVICE
    model["feature_order"] = ORDER
    assert set(model["features"]) == set(FEATURES)
    return cfg


def events(d: DaemonProcess) -> float:
    return sample(d.metrics(), "driftwatch_events_total", model="m") or 0


def invalid(d: DaemonProcess, reason: str) -> float:
    return sample(d.metrics(), "driftwatch_invalid_events_total", reason=reason) or 0


@pytest.mark.usefixtures("kafka_library")
def test_kserve_v1_and_v2_unkeyed_on_three_partitions_counted_exactly_then_drift_fires(
    broker, topic, tmp_path, daemons
):
    create_topic(broker, topic, partitions=3)
    with WebhookServer() as hook:
        cfg = ce_config(broker, tmp_path, topic, webhooks={"retrain": {"url": hook.url}})
        cfg["kafka"]["max_event_bytes"] = 20_000
        cfg["models"][0]["webhooks"] = ["retrain"]
        d = DaemonProcess(cfg, tmp_path).start()
        daemons.append(d)
        n = send(broker, topic, traffic(1, 150, 8))  # 1,200 instances in 150 pairs
        bad = [
            ([("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"s"),
              ("ce_type", REQUEST.encode()), ("ce_inferenceservicename", SERVICE.encode())],
             b"{not json"),
            ([("ce_specversion", b"1.0"), ("ce_id", b"y"), ("ce_source", b"s"),
              ("ce_type", b"dev.knative.other"), ("ce_inferenceservicename", SERVICE.encode())],
             b"{}"),
            ([("ce_specversion", b"1.0"), ("ce_id", b"z"), ("ce_source", b"s"),
              ("ce_type", REQUEST.encode()), ("ce_inferenceservicename", b"nobody")],
             orjson.dumps(v1_request(rows(9, 2)))),
            # 30 KB of headers: over max_event_bytes, copied as a stub, counted too_large
            ([("ce_specversion", b"1.0"), ("x-junk", b"j" * 30_000)], b"{}"),
        ]  # fmt: skip
        send(broker, topic, bad)
        assert n == 300
        wait_for(lambda: events(d) == 1200, 60, what="1,200 events counted")
        wait_for(lambda: invalid(d, "invalid_json") == 1, 10, what="the bad JSON counted")
        assert invalid(d, "not_inference_event") == 1
        assert invalid(d, "unknown_model") == 1
        assert invalid(d, "too_large") == 1
        time.sleep(2)
        assert events(d) == 1200  # nothing counted twice
        assert not hook.bodies()
        # drift: x1 and x2 move far; the window of 1,000 fills with drifted instances
        send(broker, topic, traffic(2, 150, 8, shift=("x1", "x2")))
        wait_for(lambda: events(d) == 2400, 60, what="2,400 events counted")
        wait_for(hook.bodies, 30, what="a drift webhook")
        body = hook.bodies()[0]
        assert body["model"] == "m" and body["type"] == "drift.detected"
        assert {f["feature"] for f in body["drifted_features"]} >= {"x1", "x2"}
        assert d.stop() == 0


def test_a_killed_replica_loses_and_doubles_nothing(broker, topic, tmp_path, daemons):
    """Two replicas in one group, each re-keying and monitoring. One kills itself (SIGKILL,
    the test-only fault hook) after its copies of a poll were acknowledged but before it
    committed their input offsets: the survivor takes over both stages' partitions and
    copies those records again. Every instance is counted exactly once, and the copies
    made twice are seen being skipped."""
    create_topic(broker, topic, partitions=3)
    state_topic = f"state-{topic}"
    base = ce_config(broker, tmp_path, topic, state={"backend": "kafka", "topic": state_topic})
    first = DaemonProcess(
        base, tmp_path, env={"DRIFTWATCH_FAULT": "repartition.before_commit@2"}
    ).start()
    daemons.append(first)
    second_cfg = {**base, "http": {"host": "127.0.0.1", "port": free_port()}}
    second_cfg["state"] = {**base["state"], "path": str(tmp_path / "state2")}
    second = DaemonProcess(second_cfg, tmp_path).start()
    daemons.append(second)
    assert first.proc is not None
    total = 0
    round_ = 0
    while first.proc.poll() is None:
        assert round_ < 20, "the first replica never copied twice"
        total += 8 * send(broker, topic, traffic(10 + round_, 40, 8)) // 2
        round_ += 1
        time.sleep(1.0)
    assert first.proc.returncode == -signal.SIGKILL
    assert "DRIFTWATCH_FAULT reached at repartition.before_commit" in first.log.read_text()
    for r in range(3):
        total += 8 * send(broker, topic, traffic(100 + r, 40, 8)) // 2
    wait_for(lambda: events(second) == total, 90, what=f"{total} events on the survivor")
    time.sleep(3)
    text = second.metrics()
    assert sample(text, "driftwatch_events_total", model="m") == total
    assert (sample(text, "driftwatch_copies_skipped_total", model="m") or 0) > 0
    assert second.stop() == 0


def post(d: DaemonProcess, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(d.base + "/v1/cloudevents", data=body, method="POST")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"{}")


def test_http_bridge_answers_202_only_after_the_broker_has_the_event(
    broker, topic, tmp_path, daemons
):
    """KServe's logger pointed at driftwatch: POST /v1/cloudevents produces each event to
    the prediction topic (202 once acknowledged); the daemon reads them back and counts
    every instance. Bad requests are refused and never reach the topic."""
    create_topic(broker, topic, partitions=2)
    cfg = ce_config(broker, tmp_path, topic)
    cfg["http"].update(
        {"ingest": True, "ingest_token_env": "DW_INGEST_TOKEN", "ingest_max_bytes": 20000}
    )
    d = DaemonProcess(cfg, tmp_path, env={"DW_INGEST_TOKEN": "t0ken"}).start()
    daemons.append(d)
    auth = {"Authorization": "Bearer t0ken"}
    accepted = 0
    for headers, value in traffic(5, 30, 4):
        h = {**auth}
        for name, v in headers:
            h[name.replace("ce_", "Ce-") if name.startswith("ce_") else name] = v.decode()
        code, answer = post(d, h, value)
        assert code == 202, answer
        accepted += 1
    assert accepted == 60
    wait_for(lambda: events(d) == 120, 60, what="120 events posted over HTTP")
    ok_headers = {
        f"Ce-{k[3:]}": v.decode() for k, v in binary("h-1", "request", {})[0] if k.startswith("ce_")
    }
    body = orjson.dumps(v1_request(rows(3, 1)))
    assert post(d, ok_headers, body)[0] == 401  # no token
    assert post(d, {**ok_headers, "Authorization": "Bearer wrong"}, body)[0] == 401
    code, answer = post(d, {**ok_headers, **auth}, b"{oops")
    assert (code, answer["error"]) == (400, "invalid_json")
    code, answer = post(d, {**ok_headers, **auth, "Ce-Type": "x.other"}, body)
    assert (code, answer["error"]) == (400, "not_inference_event")
    code, _ = post(d, {**ok_headers, **auth}, b"{" + b" " * 30000 + b"}")
    assert code == 413
    time.sleep(2)
    assert events(d) == 120  # nothing refused was produced
    assert invalid(d, "invalid_json") == 0
    text = d.metrics()
    assert sample(text, "driftwatch_ingest_requests_total", code="202") == 60
    assert sample(text, "driftwatch_ingest_requests_total", code="401") == 2
    assert sample(text, "driftwatch_payload_pairs_pending", model="m") == 0
    assert d.stop() == 0
