"""``POST /v1/cloudevents``: model servers' payload logs over HTTP (CONTRACT section 12).

KServe's logger ``url`` can point at driftwatch instead of a Knative broker. Each request is
one CloudEvent (HTTP binary mode: ``Ce-*`` headers, body = data; or structured mode,
``Content-Type: application/cloudevents+json``). It is validated (the same parser the
daemon reads the topic with), then produced to ``kafka.prediction_topic`` in Kafka binary
(or structured) content mode, exactly as Knative's KafkaSink would write it, and answered
``202 Accepted`` only once the broker acknowledged it (``acks=all``): the topic, not this
process, holds the only copy, so a crash after 202 loses nothing and a crash before it
leaves the sender to retry. The daemon then reads it back like any other record.

Answers: 202 accepted; 400 not a valid inference CloudEvent (the reason and detail in the
body); 401 a token is required and the ``Authorization: Bearer`` one is missing or wrong
(compared in constant time, never logged); 413 over ``http.ingest_max_bytes`` (judged on
``Content-Length`` before the body is read); 411 without ``Content-Length``; 503 the
broker did not acknowledge in time (``Retry-After``), so the sender retries.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

import orjson
from kafka.errors import MessageSizeTooLargeError

from driftwatch.errors import InvalidEvent
from driftwatch.events.cloudevents import CloudEvent, model_of, parse, parse_http

log = logging.getLogger(__name__)

PATH = "/v1/cloudevents"
_JSON = "application/json"


class Sender(Protocol):
    """What the endpoint needs of a producer: ``send`` returns a future whose ``get``
    raises unless the broker acknowledged the record."""

    def send(
        self, topic: str, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any: ...


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def kafka_record(
    ce: CloudEvent, headers: Mapping[str, str], body: bytes
) -> list[tuple[str, bytes]]:
    """The Kafka headers of the record KafkaSink would write for this HTTP event, built
    from the *decoded* attributes (the HTTP binding's quoting and percent-encoding undone,
    which the Kafka binding does not do). Structured mode: the body is the event, and the
    content type is all. ``Authorization`` and every other HTTP header are dropped."""
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if ctype is not None and ctype.strip().lower().startswith("application/cloudevents"):
        return [("content-type", ctype.encode("utf-8", "surrogateescape"))]
    attrs: list[tuple[str, str | None]] = [
        ("specversion", "1.0"),
        ("id", ce.id),
        ("type", ce.type),
        ("source", ce.source),
        ("time", None if ce.time is None else _rfc3339(ce.time)),
        ("inferenceservicename", ce.inference_service),
        ("namespace", ce.namespace),
        ("component", ce.component),
        ("endpoint", ce.endpoint),
    ]
    out = [(f"ce_{k}", v.encode("utf-8")) for k, v in attrs if v is not None]
    if ctype is not None:
        out.append(("content-type", ctype.encode("utf-8", "surrogateescape")))
    return out


class CloudEventsIngest:
    def __init__(
        self,
        topic: str,
        producer: Sender,
        *,
        max_bytes: int,
        token: str | None = None,
        ack_timeout_seconds: float = 10.0,
        known: Callable[[str], bool] | None = None,
    ) -> None:
        self.topic = topic
        self.producer = producer
        self.max_bytes = max_bytes
        self._token = None if token is None else token.encode("utf-8")
        self.ack_timeout_seconds = ack_timeout_seconds
        #: whether an inference service name is a configured model (None: any)
        self.known = known
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected: dict[int, int] = {}  # status -> requests

    def authorized(self, headers: Mapping[str, str]) -> bool:
        if self._token is None:
            return True
        given = ""
        for name, value in headers.items():
            if name.lower() == "authorization":
                given = value
        scheme, _, credential = given.partition(" ")
        ok = hmac.compare_digest(credential.strip().encode("utf-8", "surrogateescape"), self._token)
        return ok and scheme.lower() == "bearer"

    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        """Answer one request whose whole body was read (status, JSON body)."""
        code, answer = self._handle(headers, body)
        with self._lock:
            if code == 202:
                self.accepted += 1
            else:
                self.rejected[code] = self.rejected.get(code, 0) + 1
        return code, answer

    def _handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        if not self.authorized(headers):
            return 401, _error("unauthorized", "a valid Authorization: Bearer token is required")
        if len(body) > self.max_bytes:
            return 413, _error("too_large", f"body over {self.max_bytes} bytes")
        try:
            ce = parse_http(headers, body, max_bytes=self.max_bytes)
        except InvalidEvent as exc:
            return 400, _error(exc.reason, exc.detail)
        service = ce.inference_service
        if not service:
            return 400, _error("missing_field", "inferenceservicename (Ce-Inferenceservicename)")
        if self.known is not None and not self.known(service):
            return 400, _error("unknown_model", f"inference service {service[:64]!r}")
        record = kafka_record(ce, headers, body)
        # the daemon reads the record back with the Kafka binding: it must say the same
        try:
            again = parse(record, body, max_bytes=self.max_bytes)
        except InvalidEvent as exc:
            return 400, _error(exc.reason, f"as a Kafka record: {exc.detail}")
        if again.inference_service != service or model_of(record, body) != service:
            return 400, _error("invalid_type", "the event does not read back the same")
        try:
            future = self.producer.send(
                self.topic, key=service.encode("utf-8"), value=body, headers=record
            )
            future.get(timeout=self.ack_timeout_seconds)
        except MessageSizeTooLargeError:
            return 413, _error("too_large", "the broker refuses a record this large")
        except Exception as exc:  # not acknowledged: the sender must retry
            log.warning("POST %s: the broker did not acknowledge the event: %s", PATH, exc)
            return 503, _error("unavailable", "the broker did not acknowledge the event")
        return 202, orjson.dumps({"accepted": ce.id})


def abandon(producer: Any) -> None:
    """Close a kafka-python producer at once, dropping what the broker never acknowledged
    (answered 503: the senders retry). ``close(timeout=0)`` alone raises from its flush
    and never stops the sender thread (kafka-python 3.x), and again when collected."""
    try:
        producer.close(timeout=0)
        return
    except Exception as exc:
        log.warning("closing the POST /v1/cloudevents producer: %s (unacknowledged dropped)", exc)
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        with contextlib.suppress(Exception):
            sender.force_close()
    producer._closed = True


def _error(reason: str, detail: str) -> bytes:
    return orjson.dumps({"error": reason, "detail": detail})
