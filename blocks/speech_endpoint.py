"""Prefect block for an OpenAI-compatible speech endpoint (`POST /v1/audio/speech`): OpenAI's
tts-1, or a local TTS server speaking the same format (Kokoro-FastAPI, openedai-speech).

Like the LLM endpoint, the block keeps the URL, model and key in the Prefect server, editable in
the UI; a storyboard names it (`sound: {engine: endpoint, endpoint: NAME}`) and the speech step
loads it. The key is a `SecretStr`: stored encrypted, shown obfuscated, never a task input.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from reelflow.sound.endpoint import SpeechEndpointConfig


class SpeechEndpoint(Block):
    """An OpenAI-compatible speech endpoint; `.config(name)` gives the core config."""

    _block_type_name = "Speech Endpoint"
    _block_type_slug = "reelflow-speech-endpoint"
    _description = "OpenAI-compatible /v1/audio/speech endpoint that speaks voice-over lines."

    base_url: str = Field(default=..., description="Base URL up to /v1, e.g. "
                          "https://api.openai.com/v1 or http://127.0.0.1:8880/v1")
    model: str = Field(default=..., description="Model name as the endpoint knows it (tts-1)")
    api_key: SecretStr | None = Field(default=None, description="Bearer token; empty for a "
                                      "local server without one")
    response_format: str = Field(default="wav", description="wav, flac, mp3, opus, aac, pcm")
    timeout: float = Field(default=60.0, gt=0, description="Seconds per request")
    max_retries: int = Field(default=4, ge=0, le=10, description="Retries of 429/5xx")
    retry_budget: float = Field(
        default=120.0, gt=0,
        description="Seconds one sentence may spend retrying (waits included) before giving up",
    )

    def config(self, name: str) -> SpeechEndpointConfig:
        return SpeechEndpointConfig(
            name=name,
            base_url=self.base_url,
            model=self.model,
            api_key=self.api_key,
            response_format=self.response_format,
            timeout=self.timeout,
            max_retries=self.max_retries,
            retry_budget=self.retry_budget,
        )


def load_speech_endpoint(name: str) -> SpeechEndpointConfig:
    """The named block's config; a missing block is one line naming it (ConfigError)."""
    from reelflow.errors import ConfigError

    try:
        block = SpeechEndpoint.load(name)
    except ValueError:
        raise ConfigError(
            f"sound.endpoint: no speech endpoint block named '{name}' (type "
            "reelflow-speech-endpoint); save one with SpeechEndpoint(base_url=..., model=..., "
            "api_key=...).save(NAME)"
        ) from None
    return block.config(name)
