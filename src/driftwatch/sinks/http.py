"""The HTTP endpoints: /metrics, /healthz, /readyz, /status (stdlib server, own thread)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

log = logging.getLogger(__name__)


class HttpEndpoints:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Callable[[str | None], tuple[bytes, str]],
        ready: Callable[[], tuple[bool, str]],
        status: Callable[[], dict[str, Any]],
    ) -> None:

        class Handler(BaseHTTPRequestHandler):
            server_version = "driftwatch"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/metrics":
                        body, ctype = metrics(self.headers.get("Accept"))
                        self._send(200, body, ctype)
                    elif path == "/healthz":
                        self._send(200, b"ok\n", "text/plain; charset=utf-8")
                    elif path == "/readyz":
                        ok, why = ready()
                        self._send(
                            200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8"
                        )
                    elif path == "/status":
                        body = orjson.dumps(
                            status(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
                        )
                        self._send(200, body, "application/json")
                    else:
                        self._send(
                            404,
                            b"not found: try /metrics, /healthz, /readyz, /status\n",
                            "text/plain",
                        )
                except Exception:
                    log.exception("http: error serving %s", path)
                    self._send(500, b"internal error\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
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
        self._server.server_close()
