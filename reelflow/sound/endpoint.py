"""Speech from an OpenAI-compatible endpoint: `POST {base_url}/audio/speech` with `model`,
`input`, `voice`, `response_format` and `speed`, answered with the audio bytes. OpenAI speaks
it, and so do local TTS servers (Kokoro-FastAPI, openedai-speech, LocalAI), so one engine covers
a paid voice and a studio's own GPU box.

The block that names the endpoint (`blocks/speech_endpoint.py`) keeps the key; this module gets
it as a SecretStr inside `SpeechEndpointConfig` and sends it only in the Authorization header.
Rate limits (429, honouring Retry-After) and server errors (5xx) are retried within a time
budget; a refused key (401/403) is one line naming the block. No message carries the key.
"""

from __future__ import annotations

import io
import logging
import subprocess
import time
from collections.abc import Callable

import httpx
import numpy as np
import soundfile
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from reelflow.errors import ConfigError
from reelflow.llm import _one_line, _retry_after, _server_message
from reelflow.sound.speech import SpeechError

log = logging.getLogger("reelflow.sound.endpoint")


class SpeechRefused(SpeechError, ConfigError):
    """The endpoint refused the request itself (a bad key, an unknown voice or model): asking
    again cannot help, so the step is not retried."""


_RETRY_STATUSES = {429, 500, 502, 503, 504}
DEFAULT_VOICE = "alloy"


class SpeechEndpointConfig(BaseModel):
    """Where and how to reach a speech endpoint; `api_key` is a SecretStr (reprs hide it)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the block's name, for messages")
    base_url: str = Field(description="up to /v1, e.g. http://127.0.0.1:8880/v1")
    model: str = Field(description="e.g. tts-1, kokoro")
    api_key: SecretStr | None = None
    response_format: str = Field("wav", description="wav, flac, mp3, opus, aac or pcm")
    timeout: float = Field(60.0, gt=0, description="seconds per request")
    max_retries: int = Field(4, ge=0, le=10)
    backoff: float = Field(1.0, ge=0, description="first wait, doubled each retry")
    max_backoff: float = Field(30.0, ge=0, description="cap on one wait, Retry-After included")
    retry_budget: float = Field(120.0, gt=0, description="seconds one sentence may take in all")

    def identity(self) -> str:
        """What the cache key knows of the endpoint: its model and URL (never the key, never
        the block's name, so rotating a key or renaming a block keeps the lines)."""
        return f"{self.model} at {self.base_url.rstrip('/')}"


class EndpointEngine:
    """A speech engine (`reelflow.sound.speech.SpeechEngine`) over HTTP."""

    name = "endpoint"

    def __init__(
        self, config: SpeechEndpointConfig, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.config = config
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"EndpointEngine(name={self.config.name!r}, model={self.config.model!r})"

    def version(self) -> str:
        return self.config.identity()

    def voice_for(self, language: str, voice: str | None) -> str:
        return voice or DEFAULT_VOICE

    def _scrub(self, text: str) -> str:
        key = self.config.api_key.get_secret_value() if self.config.api_key else ""
        return text.replace(key, "**********") if key else text

    def _fail(self, message: str, kind: type[SpeechError] = SpeechError) -> SpeechError:
        return kind(self._scrub(_one_line(message, 500)))

    def synthesize_sentence(self, text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        payload = {"model": self.config.model, "input": text, "voice": voice,
                   "response_format": self.config.response_format, "speed": speed}
        return decode_audio(self._post(payload), self.config.response_format)

    def _post(self, payload: dict[str, object]) -> bytes:
        """The audio bytes of one request, retried on 429/5xx/unreachable within the budget."""
        config = self.config
        where = f"{config.base_url.rstrip('/')}/audio/speech"
        block = f"speech endpoint block '{config.name}' ({where})"
        headers = {"Content-Type": "application/json"}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        started, attempt = time.monotonic(), 0
        with httpx.Client(timeout=httpx.Timeout(config.timeout)) as http:
            while True:
                retry_after: float | None = None
                try:
                    response = http.post(where, json=payload, headers=headers)
                except httpx.TimeoutException:
                    raise self._fail(f"{block} did not answer within {config.timeout:g} s "
                                     "(raise the block's timeout)") from None
                except httpx.TransportError as exc:
                    problem = f"is unreachable ({type(exc).__name__})"
                else:
                    if response.status_code == 200:
                        return response.content
                    if response.status_code in (401, 403):
                        raise self._fail(f"{block} refused the API key "
                                         f"({response.status_code}); set the block's api_key",
                                         SpeechRefused)  # fmt: skip
                    if response.status_code not in _RETRY_STATUSES:
                        kind = SpeechRefused if response.status_code < 500 else SpeechError
                        raise self._fail(f"{block} answered {response.status_code}: "
                                         f"{_server_message(response)}", kind)
                    problem = f"answered {response.status_code}"
                    retry_after = _retry_after(response.headers.get("retry-after"))
                delay = min(config.max_backoff, retry_after if retry_after is not None
                            else config.backoff * 2**attempt)  # fmt: skip
                spent = time.monotonic() - started
                if attempt >= config.max_retries or spent + delay > config.retry_budget:
                    raise self._fail(f"{block} {problem} after {attempt + 1} attempts in "
                                     f"{spent:.1f} s (retry budget {config.retry_budget:g} s)")
                log.warning("%s %s; retrying in %.1f s (%d/%d)", block, problem, delay,
                            attempt + 1, config.max_retries)
                self._sleep(delay)
                attempt += 1


def decode_audio(data: bytes, response_format: str = "wav") -> tuple[np.ndarray, int]:
    """Mono int16 samples and their rate from an answer's bytes: WAV/FLAC/OGG read directly,
    raw `pcm` as OpenAI sends it (24 kHz 16-bit mono), anything else (mp3, aac) through ffmpeg."""
    if response_format == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.int16), 24000
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        from reelflow.media.ffmpeg import ffmpeg_exe

        rate = 24000
        done = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-i", "pipe:0", "-ac", "1", "-ar", str(rate),
             "-f", "s16le", "pipe:1"], input=data, capture_output=True, check=False)  # fmt: skip
        if done.returncode != 0 or not done.stdout:
            raise SpeechError(f"the speech endpoint sent audio ffmpeg cannot read "
                              f"({response_format}, {len(data)} bytes)") from None
        return np.frombuffer(done.stdout, dtype="<i2").astype(np.int16), rate
    return samples.mean(axis=1).astype(np.int16), int(rate)
