"""The HTTP endpoints: the page and its JSON; hostile clients (idle and trickling
connections, floods, oversized heads, other methods). Real sockets on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from driftwatch.monitor.history import HistoryQuery
from driftwatch.sinks.http import HttpEndpoints, load_page, page_content_security_policy
from tests.helpers import wait_for


@contextmanager
def endpoints(**kwargs: Any) -> Iterator[HttpEndpoints]:
    status = kwargs.pop("status", lambda: {"ok": True})
    http = HttpEndpoints(
        "127.0.0.1",
        0,
        lambda accept: (b"# metrics\n", "text/plain"),
        lambda: (True, "ready"),
        status,
        **kwargs,
    )
    http.start()
    try:
        yield http
    finally:
        http.stop()


def connect(http: HttpEndpoints) -> socket.socket:
    return socket.create_connection((http.host, http.port), timeout=10)


def request(http: HttpEndpoints, raw: bytes, timeout: float = 3.0) -> bytes:
    """Send a raw request and read the whole answer (the server closes after one)."""
    with socket.create_connection((http.host, http.port), timeout=timeout) as s:
        s.sendall(raw)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


def closed_by_server(s: socket.socket, within: float) -> float:
    """Seconds until the server closed ``s`` (recv returns b"" or a reset)."""
    s.settimeout(within)
    started = time.monotonic()
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def handler_threads() -> int:
    return sum("process_request" in t.name for t in threading.enumerate())


def test_get_endpoints_answer():
    with endpoints() as http:
        answer = request(http, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_line(answer) == b"HTTP/1.0 200 OK" and answer.endswith(b"\r\n\r\nok\n")
        assert b'"ok": true' in request(http, b"GET /status HTTP/1.0\r\n\r\n")
        assert status_line(request(http, b"GET /nope HTTP/1.0\r\n\r\n")).endswith(b"404 Not Found")


def test_an_idle_connection_is_closed_after_the_timeout():
    with endpoints(request_timeout_seconds=0.5) as http, connect(http) as s:
        waited = closed_by_server(s, within=5)
        assert 0.3 < waited < 2.5


def test_a_trickling_client_is_cut_off_at_the_request_deadline():
    """One byte at a time, each well within the socket timeout: the request as a whole
    must still arrive within the deadline."""
    with endpoints(request_timeout_seconds=1.0) as http, connect(http) as s:
        started = time.monotonic()
        cut = False
        for byte in b"GET /healthz HTTP/1.0\r\nX-Slow: " + b"a" * 200:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            time.sleep(0.1)
            if time.monotonic() - started > 6:
                break
        if not cut:
            cut = closed_by_server(s, within=0.5) < 0.5
        assert cut and time.monotonic() - started < 4


def test_healthz_answers_while_many_idle_connections_are_open_and_threads_stay_bounded():
    with endpoints(request_timeout_seconds=30, max_connections=16) as http:
        before = handler_threads()
        idle = [connect(http) for _ in range(100)]
        try:
            time.sleep(0.5)
            assert handler_threads() - before <= 16
            started = time.monotonic()
            answer = request(http, b"GET /healthz HTTP/1.0\r\n\r\n", timeout=5)
            assert status_line(answer) == b"HTTP/1.0 200 OK"
            assert time.monotonic() - started < 2
        finally:
            for s in idle:
                s.close()


def test_when_every_connection_is_busy_a_new_one_is_refused_quickly():
    release = threading.Event()

    def slow_status() -> dict[str, Any]:
        release.wait(10)
        return {}

    with endpoints(max_connections=2, status=slow_status) as http:
        busy = [connect(http) for _ in range(2)]
        try:
            for s in busy:
                s.sendall(b"GET /status HTTP/1.0\r\n\r\n")
            time.sleep(0.3)  # both are being served (blocked in status())
            started = time.monotonic()
            try:
                answer = request(http, b"GET /healthz HTTP/1.0\r\n\r\n", timeout=3)
            except ConnectionResetError:
                answer = b""
            assert time.monotonic() - started < 1
            assert answer == b"" or status_line(answer) == b"HTTP/1.0 503 Service Unavailable"
        finally:
            release.set()
            for s in busy:
                s.close()
        # capacity comes back once they are done
        wait_for(
            lambda: status_line(request(http, b"GET /healthz HTTP/1.0\r\n\r\n")).endswith(
                b"200 OK"
            ),
            5,
            interval=0.1,
            what="capacity back",
        )


def test_other_methods_are_405_not_a_traceback(capsys):
    with endpoints() as http:
        for method in (b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"FOO"):
            answer = request(http, method + b" /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            assert status_line(answer) == b"HTTP/1.0 405 Method Not Allowed", method
            assert b"\r\nAllow: GET, HEAD\r\n" in answer
        head = request(http, b"HEAD /healthz HTTP/1.0\r\n\r\n")
        assert status_line(head) == b"HTTP/1.0 200 OK" and head.endswith(b"\r\n\r\n")
        assert b"Content-Length: 3\r\n" in head
    assert "Traceback" not in capsys.readouterr().err


def test_an_oversized_request_head_is_refused():
    with endpoints() as http:
        answer = request(
            http, b"GET /healthz HTTP/1.0\r\n" + b"X-Big: " + b"a" * 40_000 + b"\r\n\r\n"
        )
        assert status_line(answer) == b"HTTP/1.0 431 Request Header Fields Too Large"
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(150))
        answer = request(http, b"GET /healthz HTTP/1.0\r\n" + many + b"\r\n")
        assert status_line(answer).startswith(b"HTTP/1.0 431")


def headers_of(answer: bytes) -> dict[str, str]:
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    return {k.lower(): v for k, _, v in (line.partition(": ") for line in head.split("\r\n")[1:])}


def test_the_page_is_served_with_a_strict_policy_and_no_outside_resource():
    page = load_page().decode()
    with endpoints() as http:
        answer = request(http, b"GET / HTTP/1.0\r\n\r\n")
        head = request(http, b"HEAD /?x=1 HTTP/1.0\r\n\r\n")
    assert status_line(answer) == b"HTTP/1.0 200 OK"
    h = headers_of(answer)
    assert h["content-type"] == "text/html; charset=utf-8"
    assert h["cache-control"] == "no-cache" and h["x-content-type-options"] == "nosniff"
    assert answer.split(b"\r\n\r\n", 1)[1] == page.encode()
    assert status_line(head) == b"HTTP/1.0 200 OK" and head.endswith(b"\r\n\r\n")
    assert headers_of(head)["content-length"] == str(len(page.encode()))
    # the policy names the page's own script and style by hash, nothing inline beyond them
    csp = dict(d.strip().split(" ", 1) for d in h["content-security-policy"].split(";"))
    [script] = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    [style] = re.findall(r"<style>(.*?)</style>", page, flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert csp["script-src"] == f"'sha256-{digest}'"
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert csp["style-src"] == f"'sha256-{digest}'"
    assert csp["default-src"] == "'none'" and csp["connect-src"] == "'self'"
    assert "unsafe" not in h["content-security-policy"]
    # self-contained: one script and one style element, both inline; no URL but the SVG
    # namespace; no inline handlers or style attributes (the policy would block them)
    assert len(re.findall(r"<script\b", page)) == 1 and len(re.findall(r"<style\b", page)) == 1
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]
    assert not re.search(r"<(link|img|iframe)\b|\son\w+=|\sstyle=|@import|url\(", page)
    assert page_content_security_policy("<p>no script</p>").startswith(
        "default-src 'none'; script-src 'none'; style-src 'none';"
    )


def test_history_and_distributions_are_json_under_stable_paths():
    asked: list[HistoryQuery] = []

    def history(query: HistoryQuery) -> dict[str, Any]:
        asked.append(query)
        return {"models": {"m": {"evaluations": [{"psi": 0.1234567891234}]}}}

    with endpoints(history=history, distributions=lambda: {"models": {"m": {}}}) as http:
        answer = request(http, b"GET /api/history HTTP/1.0\r\n\r\n")
        assert status_line(answer) == b"HTTP/1.0 200 OK"
        assert headers_of(answer)["content-type"] == "application/json"
        body = answer.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["models"]["m"]["evaluations"][0]["psi"] == 0.1234567891234
        assert b"\n" not in body and b": " not in body  # compact: no indent, no spaces
        for query in (
            b"limit=30",
            b"x=1&limit=0",
            b"limit=",  # blank: all
            b"limit=1000000",
            b"limit=0001000000",
            b"since=1795414915.2123456",
            b"limit=120&since=17",
            b"since=&limit=5",
            b"since=1e3",
        ):
            answer = request(http, b"GET /api/history?" + query + b" HTTP/1.0\r\n\r\n")
            assert status_line(answer) == b"HTTP/1.0 200 OK", query
        assert asked == [
            HistoryQuery(None, None),
            HistoryQuery(30, None),
            HistoryQuery(0, None),
            HistoryQuery(None, None),
            HistoryQuery(1_000_000, None),
            HistoryQuery(1_000_000, None),
            HistoryQuery(None, 1795414915.2123456),
            HistoryQuery(120, 17.0),
            HistoryQuery(5, None),
            HistoryQuery(None, 1000.0),
        ]
        del asked[:]
        for bad in (
            b"limit=-1",
            b"limit=abc",
            b"limit=1e3",
            b"limit=1000001",
            b"limit=12345678901234567890",
            b"limit=%C2%B2",
            b"since=-5",
            b"since=abc",
            b"since=nan",
            b"since=inf",
            b"since=1e999",
            b"since=1.5.2",
        ):
            answer = request(http, b"GET /api/history?" + bad + b" HTTP/1.0\r\n\r\n")
            assert status_line(answer) == b"HTTP/1.0 400 Bad Request", bad
        assert asked == []
        answer = request(http, b"GET /api/distributions HTTP/1.0\r\n\r\n")
        body = answer.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body) == {"models": {"m": {}}} and body == b'{"models":{"m":{}}}'
        # /status stays indented, for people and for grep
        assert b'"ok": true' in request(http, b"GET /status HTTP/1.0\r\n\r\n")
        missing = request(http, b"GET /api/nope HTTP/1.0\r\n\r\n")
        assert status_line(missing) == b"HTTP/1.0 404 Not Found"
        assert b"/api/history" in missing and b"/ (the page)" in missing
    with endpoints() as http:  # without the callables: not found, not a 500
        answer = request(http, b"GET /api/history HTTP/1.0\r\n\r\n")
        assert status_line(answer) == b"HTTP/1.0 404 Not Found"


def test_a_failing_document_is_a_500_and_the_server_carries_on(caplog):
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    with endpoints(distributions=broken) as http:
        answer = request(http, b"GET /api/distributions HTTP/1.0\r\n\r\n")
        assert status_line(answer) == b"HTTP/1.0 500 Internal Server Error"
        assert status_line(request(http, b"GET / HTTP/1.0\r\n\r\n")) == b"HTTP/1.0 200 OK"
    assert "error serving /api/distributions" in caplog.text


# -- POST /v1/cloudevents (the handler is sinks.ingest; here: the HTTP framing) ------------
def post_raw(length: str | None, body: bytes = b"{}", path: str = "/v1/cloudevents") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def test_post_framing_411_413_400_and_a_body_read_whole(caplog):
    got: list[bytes] = []

    def ingest(headers: Any, body: bytes) -> tuple[int, bytes]:
        got.append(body)
        return 202, b'{"accepted": "x"}'

    with endpoints(ingest=ingest, ingest_max_bytes=100) as http:
        assert status_line(request(http, post_raw("2", b"{}"))).endswith(b"202 Accepted")
        assert got == [b"{}"]
        assert b" 411 " in status_line(request(http, post_raw(None)))
        assert b" 413 " in status_line(request(http, post_raw("101", b"x" * 101)))
        # a latin-1 superscript two passes str.isdigit() but is no length
        assert b" 400 " in status_line(request(http, post_raw("\u00b2")))
        assert b" 404 " in status_line(request(http, post_raw("2", b"{}", path="/other")))
        assert got == [b"{}"]
    assert "Traceback" not in caplog.text


def test_post_is_405_when_ingest_is_off():
    with endpoints() as http:
        assert b" 405 " in status_line(request(http, post_raw("2")))


def test_posts_waiting_on_the_broker_never_take_the_probes_slots():
    release = threading.Event()

    def slow(headers: Any, body: bytes) -> tuple[int, bytes]:
        release.wait(20)
        return 202, b"{}"

    with endpoints(ingest=slow, max_connections=8) as http:
        threads = [
            threading.Thread(target=request, args=(http, post_raw("2"), 30)) for _ in range(4)
        ]
        for t in threads:
            t.start()
        time.sleep(0.5)
        # 4 of 8 connections wait on the "broker": the 5th POST is turned away at once...
        assert b" 503 " in status_line(request(http, post_raw("2")))
        # ...and the probe still answers
        assert status_line(request(http, b"GET /healthz HTTP/1.0\r\n\r\n")).endswith(b"200 OK")
        release.set()
        for t in threads:
            t.join(30)
