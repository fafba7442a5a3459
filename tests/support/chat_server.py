"""A real OpenAI-compatible chat endpoint on 127.0.0.1 for tests: no HTTP mocks anywhere.

Each test queues the answers it wants (`Reply`), in order; when the queue is empty a `responder`
function (if given) answers from the request, so an end-to-end test can answer by schema name.
Every request is recorded (path, headers, JSON body, arrival time) for assertions.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One recorded answer. `content` is wrapped in a chat completion; `body` is sent verbatim."""

    content: str | dict[str, Any] | list[Any] | None = None
    status: int = 200
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 7
    finish_reason: str = "stop"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    json: dict[str, Any]
    at: float

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.json.get("response_format")

    @property
    def schema_name(self) -> str | None:
        fmt = self.response_format or {}
        return (fmt.get("json_schema") or {}).get("name")

    @property
    def last_user(self) -> str:
        users = [m["content"] for m in self.json.get("messages", []) if m["role"] == "user"]
        return users[-1] if users else ""


Responder = Callable[[Request], "Reply | str | dict[str, Any]"]


def completion(reply: Reply, model: str) -> dict[str, Any]:
    content = reply.content
    if not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False)
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": reply.prompt_tokens,
                  "completion_tokens": reply.completion_tokens,
                  "total_tokens": reply.prompt_tokens + reply.completion_tokens},
    }


class ChatServer:
    """Threaded HTTP server replaying queued replies; use as a context manager."""

    def __init__(self, *replies: Reply, responder: Responder | None = None) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.responder = responder
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                request = Request(self.path, dict(self.headers.items()), body, time.monotonic())
                reply = server._next(request)
                if reply.delay:
                    # sleep in slices so stop() does not wait for a "slow" reply to finish
                    end = time.monotonic() + reply.delay
                    while time.monotonic() < end and not server._stopping.is_set():
                        time.sleep(0.02)
                if reply.body is not None:
                    payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                elif reply.status == 200:
                    payload = json.dumps(completion(reply, str(body.get("model", ""))))
                else:
                    payload = json.dumps({"error": {"message": f"status {reply.status}",
                                                    "type": "test"}})
                data = payload.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _next(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.replies:
                return self.replies.popleft()
        if self.responder is not None:
            answer = self.responder(request)
            if isinstance(answer, Reply):
                return answer
            return Reply(content=answer)
        return Reply(status=599, body={"error": {"message": "test server: no reply queued"}})

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
