"""A webhook receiver on 127.0.0.1 for notification tests: records every JSON POST it gets."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.waiting import wait_until


class WebhookReceiver:
    """`with WebhookReceiver() as hook:` -> `hook.url`, `hook.messages`, `hook.wait_for(...)`."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = {"raw": raw.decode(errors="replace")}
                with receiver._lock:
                    receiver.messages.append(body)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict:
        """The first message `match` accepts; AssertionError with what did arrive otherwise."""
        def matching() -> dict | None:
            with self._lock:
                return next((message for message in self.messages if match(message)), None)

        return wait_until("a matching webhook", matching, timeout, interval=0.25,
                          detail=lambda: f"got {self.messages}")
