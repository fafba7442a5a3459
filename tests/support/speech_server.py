"""A real OpenAI-compatible speech endpoint on 127.0.0.1 for tests: `POST /v1/audio/speech`
answered with real audio (a WAV of tone bursts), no HTTP mocks.

Each sentence is spoken as a 440 Hz tone of `TONE_SECONDS / speed` between short silences (as
engines pad their output), so where a sentence starts can be measured in the film. Queued
`SpeechReply`s (a status and headers: 429 with Retry-After, 401, 503) answer first, in order.
Every request is recorded with its headers and JSON body.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import soundfile

RATE = 24000
TONE_SECONDS = 0.5
PAD_SECONDS = 0.08


@dataclass
class SpeechReply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    echo_key: bool = False  # an error body that quotes the Authorization header back


@dataclass
class SpeechRequest:
    path: str
    headers: dict[str, str]
    json: dict[str, Any]
    at: float
    status: int = 0


def tone_wav(seconds: float, rate: int = RATE, pad: float = PAD_SECONDS) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    silence = np.zeros(int(pad * rate))
    buffer = io.BytesIO()
    soundfile.write(buffer, np.concatenate([silence, tone, silence]), rate, format="WAV",
                    subtype="PCM_16")  # fmt: skip
    return buffer.getvalue()


class SpeechServer:
    """Threaded HTTP server speaking the speech wire format; use as a context manager."""

    def __init__(self, *replies: SpeechReply) -> None:
        self.replies: deque[SpeechReply] = deque(replies)
        self.requests: list[SpeechRequest] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = SpeechRequest(self.path, dict(self.headers.items()),
                                        json.loads(raw or b"{}"), time.monotonic())
                with server._lock:
                    server.requests.append(request)
                    reply = server.replies.popleft() if server.replies else SpeechReply()
                request.status = reply.status
                body = request.json
                if reply.status != 200:
                    said = self.headers.get("Authorization", "") if reply.echo_key else ""
                    data = json.dumps({"error": {"message": f"status {reply.status} {said}",
                                                 "type": "test"}}).encode()
                    kind = "application/json"
                elif self.path != "/v1/audio/speech" or not str(body.get("input", "")).strip():
                    reply.status = request.status = 400
                    data, kind = b'{"error": {"message": "bad request"}}', "application/json"
                else:
                    data = tone_wav(TONE_SECONDS / float(body.get("speed") or 1.0))
                    kind = "audio/wav"
                self.send_response(reply.status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def queue(self, *replies: SpeechReply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def __enter__(self) -> SpeechServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
