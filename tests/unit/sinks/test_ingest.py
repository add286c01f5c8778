"""POST /v1/cloudevents, the handler alone: a fake producer stands in for the broker."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftwatch.sinks.ingest import CloudEventsIngest

REQUEST = "org.kubeflow.serving.inference.request"


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float) -> None:
        if self.error is not None:
            raise self.error


class FakeProducer:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.error = error

    def send(
        self, topic: str, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Future:
        if self.error is None:
            self.sent.append({"topic": topic, "key": key, "value": value, "headers": headers})
        return Future(self.error)


def ce_headers(**over: str) -> dict[str, str]:
    h = {
        "Ce-Specversion": "1.0",
        "Ce-Id": "abc-1",
        "Ce-Type": REQUEST,
        "Ce-Source": "http://localhost:9081/",
        "Ce-Inferenceservicename": "credit",
        "Content-Type": "application/json",
        "Authorization": "Bearer s3cret",
    }
    h.update(over)
    return h


BODY = orjson.dumps({"instances": [[1.0, 2.0]]})


def ingest(producer: FakeProducer, token: str | None = "s3cret", **kw: Any) -> CloudEventsIngest:
    return CloudEventsIngest(
        "preds", producer, max_bytes=1000, token=token, known=lambda s: s == "credit", **kw
    )


def test_accepted_event_is_produced_in_kafka_binary_mode_without_the_token():
    p = FakeProducer()
    code, body = ingest(p).handle(ce_headers(), BODY)
    assert code == 202 and orjson.loads(body) == {"accepted": "abc-1"}
    (rec,) = p.sent
    assert rec["topic"] == "preds" and rec["key"] == b"credit" and rec["value"] == BODY
    names = dict(rec["headers"])
    assert names["ce_id"] == b"abc-1" and names["ce_type"] == REQUEST.encode()
    assert names["content-type"] == b"application/json"
    assert not any("auth" in n.lower() or b"s3cret" in v for n, v in rec["headers"])


@pytest.mark.parametrize(
    ("auth", "code"),
    [
        (None, 401),
        ("Bearer wrong", 401),
        ("Basic s3cret", 401),
        ("Bearer s3cret", 202),
        ("bearer s3cret", 202),
        ("Bearer s3cret2", 401),
        ("Bearer s3cre", 401),
    ],
)
def test_bearer_token(auth, code):
    h = ce_headers()
    del h["Authorization"]
    if auth is not None:
        h["authorization"] = auth
    p = FakeProducer()
    assert ingest(p).handle(h, BODY)[0] == code
    assert len(p.sent) == (1 if code == 202 else 0)


def test_no_token_configured_accepts_without_authorization():
    h = ce_headers()
    del h["Authorization"]
    assert ingest(FakeProducer(), token=None).handle(h, BODY)[0] == 202


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (ce_headers(**{"Ce-Type": "dev.other.event"}), BODY, "not_inference_event"),
        (ce_headers(), b"{nope", "invalid_json"),
        (ce_headers(**{"Ce-Specversion": "0.3"}), BODY, "invalid_version"),
        (ce_headers(**{"Ce-Inferenceservicename": "nobody"}), BODY, "unknown_model"),
    ],
)
def test_malformed_events_get_400_with_the_reason_and_nothing_is_produced(headers, body, reason):
    p = FakeProducer()
    code, answer = ingest(p).handle(headers, body)
    assert code == 400 and orjson.loads(answer)["error"] == reason
    assert p.sent == []


def test_body_over_the_cap_is_413():
    p = FakeProducer()
    code, _ = ingest(p).handle(ce_headers(), b"{" + b" " * 2000 + b"}")
    assert code == 413 and p.sent == []


def test_broker_not_acknowledging_is_503_so_the_sender_retries():
    i = ingest(FakeProducer(TimeoutError("no ack")))
    code, answer = i.handle(ce_headers(), BODY)
    assert code == 503 and orjson.loads(answer)["error"] == "unavailable"
    assert i.rejected == {503: 1} and i.accepted == 0


def test_structured_mode_is_forwarded_as_is():
    p = FakeProducer()
    event = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "s-1",
            "type": REQUEST,
            "source": "x",
            "inferenceservicename": "credit",
            "data": {"instances": [[1.0]]},
        }
    )
    h = {"Content-Type": "application/cloudevents+json", "Authorization": "Bearer s3cret"}
    assert ingest(p).handle(h, event)[0] == 202
    assert p.sent[0]["value"] == event
    assert p.sent[0]["headers"] == [("content-type", b"application/cloudevents+json")]


@pytest.mark.parametrize(
    "over",
    [
        {"Ce-Inferenceservicename": '"credit"'},  # HTTP quoting
        {"Ce-Inferenceservicename": "cr%65dit"},  # HTTP percent-encoding
        {"Ce-Time": "2026-11-23T06%3A00%3A00Z"},
        {"Ce-Id": "a%2Fb"},
    ],
)
def test_http_encodings_are_undone_so_the_daemon_reads_back_what_got_202(over):
    from driftwatch.events.cloudevents import parse

    p = FakeProducer()
    code, _ = ingest(p).handle(ce_headers(**over), BODY)
    assert code == 202
    rec = p.sent[0]
    ce = parse(rec["headers"], rec["value"], max_bytes=1000)  # the daemon's own reading
    assert ce.inference_service == "credit"
    assert not any(b"%" in v or v.startswith(b'"') for _, v in rec["headers"])


def test_broker_refusing_the_size_is_413_not_a_retry_storm():
    from kafka.errors import MessageSizeTooLargeError

    code, _ = ingest(FakeProducer(MessageSizeTooLargeError("big"))).handle(ce_headers(), BODY)
    assert code == 413


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=8),
    st.binary(max_size=1200),
)
def test_any_request_gets_an_answer_and_only_202_produces(headers, body):
    p = FakeProducer()
    code, answer = ingest(p, token=None).handle(headers, body)
    assert code in (202, 400, 413)
    assert orjson.loads(answer)
    assert len(p.sent) == (1 if code == 202 else 0)
