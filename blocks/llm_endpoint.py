"""Prefect block for an OpenAI-compatible chat endpoint (DeepSeek, Kimi, OpenAI, Ollama, vLLM).

A block keeps the endpoint, model and key in the Prefect server, editable in the UI, so flows name
an endpoint (`LLMEndpoint.load("script-doctor")`) instead of carrying a secret in parameters. The
key is a `SecretStr` field: Prefect stores it encrypted and shows it obfuscated.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from reelflow.llm import ChatClient, LLMConfig


class LLMEndpoint(Block):
    """An OpenAI-compatible chat completions endpoint; `.config()` gives the core `LLMConfig`."""

    _block_type_name = "LLM Endpoint"
    _block_type_slug = "reelflow-llm-endpoint"
    _description = "OpenAI-compatible chat endpoint used for script, calibration and camera steps."

    base_url: str = Field(
        default=..., description="Base URL up to /v1, e.g. https://api.deepseek.com/v1"
    )
    model: str = Field(default=..., description="Model name as the endpoint knows it")
    api_key: SecretStr | None = Field(default=None, description="Bearer token; empty for Ollama")
    timeout: float = Field(default=120.0, gt=0, description="Seconds per request")
    max_retries: int = Field(default=3, ge=0, le=10, description="Retries of 429/5xx")
    retry_budget: float = Field(
        default=120.0, gt=0,
        description="Seconds one call may spend retrying (waits included) before giving up",
    )
    temperature: float | None = Field(default=None, ge=0, le=2)

    def config(self) -> LLMConfig:
        return LLMConfig(
            base_url=self.base_url,
            model=self.model,
            api_key=self.api_key,
            timeout=self.timeout,
            max_retries=self.max_retries,
            retry_budget=self.retry_budget,
            temperature=self.temperature,
        )

    def client(self) -> ChatClient:
        return ChatClient(self.config())
