"""A local webhook receiver that verifies signatures and prints what it gets."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from driftwatch.sinks.webhook import secret_key, sign


class Receiver:
    def __init__(
        self, secret: str | None, on_message: Callable[[dict[str, Any], bool], None]
    ) -> None:
        key = secret_key(secret) if secret else None

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                verified = False
                if key is not None:
                    msg_id = self.headers.get("webhook-id", "")
                    ts = self.headers.get("webhook-timestamp", "0")
                    expected = sign(key, msg_id, int(ts), body)
                    verified = expected in self.headers.get("webhook-signature", "").split(" ")
                self.send_response(204)
                self.end_headers()
                on_message(json.loads(body), verified)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks/retrain"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
