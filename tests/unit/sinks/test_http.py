"""The HTTP endpoints under hostile clients: idle and trickling connections, floods,
oversized heads and other methods (real sockets on 127.0.0.1)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from driftwatch.sinks.http import HttpEndpoints
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
