"""The HTTP endpoints (stdlib server, own thread): ``/`` (the web page), ``/metrics``,
``/healthz``, ``/readyz``, ``/status``, and the page's JSON, ``/api/history`` and
``/api/distributions`` (documented in ``docs/page-api.md``).

The page is one self-contained HTML file shipped with the package (``sinks/page/``: inline
CSS and JavaScript, no external resource); it is served with ``Cache-Control: no-cache``
and a Content-Security-Policy that allows only its own inline script and style (by their
SHA-256) and requests to its own origin.

Hardened against clients that hold connections: every socket read and write times out
after ``request_timeout_seconds``, and a request line plus headers must arrive whole
within that time (a client trickling a byte at a time is cut off too). At most
``max_connections`` connections are handled at once; beyond that the oldest one still
sending its request is dropped to make room, and when every connection is being answered
the new one gets a quick 503. The request line and headers are capped at
``MAX_REQUEST_HEAD_BYTES`` (431) and 100 header lines (the stdlib's limit, 431). GET and
HEAD are served, and ``POST /v1/cloudevents`` when ingest is on (``sinks.ingest``): any
other method is answered 405.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import math
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import orjson

from driftwatch.monitor.history import HistoryQuery
from driftwatch.sinks.ingest import PATH as INGEST_PATH

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD_BYTES = 16 * 1024
_CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")
#: After an early answer (405, 431), the client's input is discarded this long, at most.
_LINGER_SECONDS = 1.0
_LINGER_MAX_BYTES = 1024 * 1024
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\nbusy\n"
)


_NOT_FOUND = (
    b"not found: try / (the page), /metrics, /healthz, /readyz, /status, /api/history,"
    b" /api/distributions\n"
)
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
#: /api/history?limit=: a whole number up to MAX_HISTORY_LIMIT (blank: all)
_LIMIT = re.compile(r"[0-9]{1,16}")
MAX_HISTORY_LIMIT = 1_000_000
#: /api/history?since=: an evaluation time, as the JSON gave it (blank: all)
_SINCE = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?")
#: status, body, content type, extra headers
_Answer = tuple[int, bytes, str, dict[str, str]]


class _HeadTooLarge(Exception):
    pass


def _inline_hashes(html: str, tag: str) -> list[str]:
    """CSP sources (``'sha256-...'``) of the page's inline ``<tag>`` elements' contents."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    ]


def page_content_security_policy(html: str) -> str:
    """The page's policy: its own inline script and style only, requests to its origin."""
    scripts = " ".join(_inline_hashes(html, "script")) or "'none'"
    styles = " ".join(_inline_hashes(html, "style")) or "'none'"
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def load_page() -> bytes:
    """The web page, as shipped in the package (``driftwatch/sinks/page/index.html``)."""
    return resources.files("driftwatch.sinks").joinpath("page", "index.html").read_bytes()


def _dumps(doc: Any, compact: bool = False) -> bytes:
    """JSON: indented for people (``/status``), or ``compact`` for the page's documents,
    which can be large (``/api/history``: models x features x evaluations)."""
    indent = 0 if compact else orjson.OPT_INDENT_2
    return orjson.dumps(doc, option=indent | orjson.OPT_SERIALIZE_NUMPY)


def _history_query(query: str) -> HistoryQuery:
    """``?limit=N&since=T`` of ``/api/history`` (the last of repeated ones; blank: unset);
    ValueError (a 400) if either is not what it should be."""
    values = parse_qs(query, keep_blank_values=True)
    limit = (values.get("limit") or [""])[-1]
    since = (values.get("since") or [""])[-1]
    n: int | None = None
    if limit:
        if not _LIMIT.fullmatch(limit) or int(limit) > MAX_HISTORY_LIMIT:
            raise ValueError(
                f"limit: expected a whole number of evaluations, 0 to {MAX_HISTORY_LIMIT}"
                " (blank: all)"
            )
        n = int(limit)
    t: float | None = None
    if since:
        if not _SINCE.fullmatch(since) or not math.isfinite(float(since)):
            raise ValueError("since: expected an evaluated_at (epoch seconds; blank: all)")
        t = float(since)
    return HistoryQuery(n, t)


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
        history: Callable[[HistoryQuery], dict[str, Any]] | None = None,
        distributions: Callable[[], dict[str, Any]] | None = None,
        ingest: Callable[[Mapping[str, str], bytes], tuple[int, bytes]] | None = None,
        ingest_max_bytes: int = 1_048_576,
        request_timeout_seconds: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        """``history(query)``: the document of ``/api/history`` (per model, the newest
        ``query.limit`` evaluations, None: all kept, of those evaluated after
        ``query.since``, None: all); ``distributions()``: that of
        ``/api/distributions``. Without them those paths answer 404. ``ingest(headers,
        body)``: the answer to ``POST /v1/cloudevents`` (``sinks.ingest``); without it, POST
        is 405 like any other method. Its body must come with a ``Content-Length`` (411)
        of at most ``ingest_max_bytes`` (413, judged before reading), whole within the
        request timeout like the head."""
        page = load_page()
        page_headers = {
            "Cache-Control": "no-cache",
            "Content-Security-Policy": page_content_security_policy(page.decode()),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        json_headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

        def route(path: str, query: str, accept: str | None) -> _Answer:
            if path == "/":
                return 200, page, "text/html; charset=utf-8", page_headers
            if path == "/metrics":
                return 200, *metrics(accept), {}
            if path == "/healthz":
                return 200, b"ok\n", _TEXT, {}
            if path == "/readyz":
                ok, why = ready()
                return 200 if ok else 503, (why + "\n").encode(), _TEXT, {}
            if path == "/status":
                return 200, _dumps(status()), _JSON, json_headers
            if path == "/api/history" and history is not None:
                try:
                    asked = _history_query(query)
                except ValueError as exc:
                    return 400, f"{exc}\n".encode(), _TEXT, {}
                return 200, _dumps(history(asked), compact=True), _JSON, json_headers
            if path == "/api/distributions" and distributions is not None:
                return 200, _dumps(distributions(), compact=True), _JSON, json_headers
            return 404, _NOT_FOUND, _TEXT, {}

        #: POSTs being read or answered (each may wait on the broker): at most half the
        #: connections, so GETs and the probes always find room
        posting = threading.BoundedSemaphore(max(1, max_connections // 2))

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
                if self.command == "POST" and ingest is not None:
                    return True
                self._not_allowed()
                return False  # answered here: no do_<METHOD> dispatch

            def do_GET(self) -> None:
                self._get(with_body=True)

            def do_HEAD(self) -> None:
                self._get(with_body=False)

            def do_POST(self) -> None:
                assert ingest is not None
                path = self.path.partition("?")[0]
                length = self.headers.get("Content-Length")
                early: tuple[int, bytes] | None = None
                if path != INGEST_PATH:
                    early = 404, _NOT_FOUND
                elif self.headers.get("Transfer-Encoding") is not None or length is None:
                    early = 411, b'{"error": "length_required", "detail": "Content-Length"}'
                elif not _CONTENT_LENGTH.fullmatch(length.strip()):
                    early = 400, b'{"error": "bad_request", "detail": "Content-Length"}'
                elif int(length) > ingest_max_bytes:
                    early = 413, b'{"error": "too_large", "detail": "body over the limit"}'
                elif not posting.acquire(blocking=False):  # keep slots for GETs and probes
                    early = 503, b'{"error": "busy", "detail": "too many events in flight"}'
                if early is not None:
                    self.server.answering(self.connection)
                    self.close_connection = True
                    self._send(early[0], early[1], _JSON)
                    self._linger()
                    return
                assert length is not None
                try:
                    body = self.rfile.read(int(length))  # within the request deadline
                    if len(body) < int(length):  # the client went away
                        self.close_connection = True
                        return
                    self.server.answering(self.connection)
                    try:
                        code, answer = ingest(dict(self.headers.items()), body)
                    except Exception:
                        log.exception("http: error serving POST %s", path)
                        code, answer = 500, b'{"error": "internal_error"}'
                finally:
                    posting.release()
                extra = {}
                if code == 503:
                    extra["Retry-After"] = "1"
                elif code == 401:
                    extra["WWW-Authenticate"] = 'Bearer realm="driftwatch"'
                self._send(code, answer, _JSON, True, extra)

            def _get(self, with_body: bool) -> None:
                self.server.answering(self.connection)
                path, _, query = self.path.partition("?")
                try:
                    code, body, ctype, headers = route(path, query, self.headers.get("Accept"))
                except Exception:
                    log.exception("http: error serving %s", path)
                    code, body, ctype, headers = 500, b"internal error\n", "text/plain", {}
                self._send(code, body, ctype, with_body, headers)

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

            def _send(
                self,
                code: int,
                body: bytes,
                ctype: str,
                with_body: bool = True,
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
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
