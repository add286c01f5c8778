"""The HTTP endpoints: /metrics, /healthz, /readyz, /status (stdlib server, own thread).

Hardened against clients that hold connections: every socket read and write times out
after ``request_timeout_seconds``, and a request line plus headers must arrive whole
within that time (a client trickling a byte at a time is cut off too). At most
``max_connections`` connections are handled at once; beyond that the oldest one still
sending its request is dropped to make room, and when every connection is being answered
the new one gets a quick 503. The request line and headers are capped at
``MAX_REQUEST_HEAD_BYTES`` (431) and 100 header lines (the stdlib's limit, 431). Only GET
and HEAD are served: any other method is answered 405.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD_BYTES = 16 * 1024
#: After an early answer (405, 431), the client's input is discarded this long, at most.
_LINGER_SECONDS = 1.0
_LINGER_MAX_BYTES = 1024 * 1024
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\nbusy\n"
)


class _HeadTooLarge(Exception):
    pass


class _HeadReader(io.BufferedIOBase):
    """The connection's input stream, with a cap on the bytes read by ``readline`` (the
    request line and headers; the stdlib allows 64 KiB per line, 100 lines)."""

    def __init__(self, raw: io.BufferedIOBase, limit: int) -> None:
        super().__init__()
        self._raw = raw
        self._left = limit

    def readline(self, size: int | None = -1) -> bytes:
        n = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        line = self._raw.readline(n)
        self._left -= len(line)
        if self._left < 0:
            raise _HeadTooLarge
        return line

    def read(self, size: int | None = -1) -> bytes:
        return self._raw.read(size)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _hang_up(conn: socket.socket) -> None:
    """Wake the handler blocked reading ``conn``: its read returns end-of-file."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        request_timeout: float,
        max_connections: int,
    ) -> None:
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        # admitted connections -> the time by which the request must have been read
        # (inf once it is being answered)
        self._conns: dict[socket.socket, float] = {}
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            admit = len(self._conns) < self.max_connections
            if not admit:
                reading = [(d, c) for c, d in self._conns.items() if d != math.inf]
                if reading:  # drop the oldest connection still sending its request
                    _, victim = min(reading, key=lambda dc: dc[0])
                    del self._conns[victim]
                    _hang_up(victim)
                    admit = True
            if admit:
                self._conns[request] = time.monotonic() + self.request_timeout
        if not admit:  # every connection is being answered
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_BUSY)
                request.recv(65536)  # what already came, so closing sends FIN, not RST
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def answering(self, conn: socket.socket) -> None:
        """The request on ``conn`` has been read; it is being answered."""
        with self._conns_lock:
            if conn in self._conns:
                self._conns[conn] = math.inf

    def service_actions(self) -> None:
        """Called by serve_forever at least every poll interval (0.5 s): hang up the
        connections whose request has not arrived in time."""
        now = time.monotonic()
        with self._conns_lock:
            for conn in [c for c, d in self._conns.items() if d <= now]:
                del self._conns[conn]
                _hang_up(conn)

    def hang_up_all(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                _hang_up(conn)
            self._conns.clear()

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # a client that went away, or one we hung up on
            log.debug("http: connection from %s: %s", client_address, exc)
        else:
            log.exception("http: error handling a connection from %s", client_address)


class HttpEndpoints:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Callable[[str | None], tuple[bytes, str]],
        ready: Callable[[], tuple[bool, str]],
        status: Callable[[], dict[str, Any]],
        *,
        request_timeout_seconds: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        def route(path: str, accept: str | None) -> tuple[int, bytes, str]:
            if path == "/metrics":
                return 200, *metrics(accept)
            if path == "/healthz":
                return 200, b"ok\n", "text/plain; charset=utf-8"
            if path == "/readyz":
                ok, why = ready()
                return 200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8"
            if path == "/status":
                body = orjson.dumps(
                    status(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
                )
                return 200, body, "application/json"
            return 404, b"not found: try /metrics, /healthz, /readyz, /status\n", "text/plain"

        class Handler(BaseHTTPRequestHandler):
            server_version = "driftwatch"
            timeout = request_timeout_seconds  # on the socket: every read and write
            server: _Server

            def setup(self) -> None:
                super().setup()
                self.rfile = _HeadReader(self.rfile, MAX_REQUEST_HEAD_BYTES)

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except _HeadTooLarge:
                    self.close_connection = True
                    # the request line may not have been parsed yet
                    for name, default in (
                        ("command", ""),
                        ("request_version", self.default_request_version),
                        ("requestline", ""),
                    ):
                        if not hasattr(self, name):
                            setattr(self, name, default)
                    self.send_error(
                        431, explain=f"request line and headers over {MAX_REQUEST_HEAD_BYTES} bytes"
                    )
                    self._linger()

            def parse_request(self) -> bool:
                if not super().parse_request():
                    return False
                if self.command in ("GET", "HEAD"):
                    return True
                self._not_allowed()
                return False  # answered here: no do_<METHOD> dispatch

            def do_GET(self) -> None:
                self._get(with_body=True)

            def do_HEAD(self) -> None:
                self._get(with_body=False)

            def _get(self, with_body: bool) -> None:
                self.server.answering(self.connection)
                path = self.path.split("?", 1)[0]
                try:
                    code, body, ctype = route(path, self.headers.get("Accept"))
                except Exception:
                    log.exception("http: error serving %s", path)
                    code, body, ctype = 500, b"internal error\n", "text/plain"
                self._send(code, body, ctype, with_body)

            def _not_allowed(self) -> None:
                self.server.answering(self.connection)
                self.close_connection = True
                self.send_response(405)
                self.send_header("Allow", "GET, HEAD")
                body = b"method not allowed: use GET\n"
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self._linger()

            def _linger(self) -> None:
                """After answering early (the client may still be sending a body or
                headers): stop writing and discard its input for a moment, so closing
                does not reset the connection under the answer."""
                with contextlib.suppress(OSError):
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_WR)
                    self.connection.settimeout(_LINGER_SECONDS)
                    left = _LINGER_MAX_BYTES
                    while left > 0 and (chunk := self.connection.recv(min(left, 65536))):
                        left -= len(chunk)

            def _send(self, code: int, body: bytes, ctype: str, with_body: bool = True) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        self._server = _Server((host, port), Handler, request_timeout_seconds, max_connections)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="driftwatch-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.hang_up_all()
        self._server.server_close()
