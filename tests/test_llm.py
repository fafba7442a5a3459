"""ChatClient against a real HTTP server on 127.0.0.1: retries, repair, fallback, secrecy."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, Field, SecretStr

from blocks.llm_endpoint import LLMEndpoint
from reelflow.llm import ChatClient, LLMConfig, LLMError, extract_json, user
from tests.support.chat_server import ChatServer, Reply

KEY = "sk-test-6f1d0c9e-DO-NOT-LEAK"


class Verdict(BaseModel):
    score: int = Field(ge=0, le=10)
    reason: str


GOOD = {"score": 7, "reason": "clear turn in shot 4"}


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as srv:
        yield srv


def client_for(server: ChatServer, **overrides: object) -> ChatClient:
    settings: dict[str, object] = {"base_url": server.url, "model": "test-model",
                                   "api_key": SecretStr(KEY), "timeout": 5.0, "backoff": 0.01}
    settings.update(overrides)
    return ChatClient(LLMConfig.model_validate(settings))


@pytest.mark.integration  # a loopback chat server
def test_structured_sends_json_schema_and_auth(server: ChatServer) -> None:
    server.queue(Reply(GOOD, prompt_tokens=30, completion_tokens=12))
    with client_for(server) as client:
        verdict, usage = client.structured([user("rate it")], Verdict)
    assert verdict == Verdict(**GOOD)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (30, 12, 42)
    assert client.usage.requests == 1 and client.usage.total_tokens == 42
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.json["model"] == "test-model"
    fmt = request.response_format
    assert fmt is not None and fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Verdict"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["score"]["maximum"] == 10


@pytest.mark.integration  # a loopback chat server
def test_malformed_json_is_repaired(server: ChatServer) -> None:
    server.queue(Reply('{"score": 7, "reason": '), Reply(GOOD))
    with client_for(server) as client:
        verdict, usage = client.structured([user("rate it")], Verdict)
    assert verdict.score == 7
    assert len(server.requests) == 2
    assert usage.requests == 2
    repair = server.requests[1].json["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"score": 7, "reason": '}
    assert "not valid JSON" in repair[-1]["content"]


@pytest.mark.integration  # a loopback chat server
def test_schema_violation_is_repaired_with_field_path(server: ChatServer) -> None:
    server.queue(Reply({"score": 42, "reason": "x"}), Reply(GOOD))
    with client_for(server) as client:
        verdict, _ = client.structured([user("rate it")], Verdict)
    assert verdict.score == 7
    assert "score" in server.requests[1].last_user
    assert "less than or equal to 10" in server.requests[1].last_user


@pytest.mark.integration  # a loopback chat server
def test_gives_up_after_repair_attempts_with_one_line(server: ChatServer) -> None:
    server.queue(*[Reply("not json at all")] * 3)
    with client_for(server, repair_attempts=2) as client, pytest.raises(LLMError) as info:
        client.structured([user("rate it")], Verdict)
    message = str(info.value)
    assert "\n" not in message
    assert "no valid Verdict after 3 attempts" in message
    assert len(server.requests) == 3


@pytest.mark.integration  # a loopback chat server
def test_check_hook_failure_is_sent_back(server: ChatServer) -> None:
    def even(verdict: Verdict) -> None:
        if verdict.score % 2:
            raise ValueError("score must be even")

    server.queue(Reply(GOOD), Reply({"score": 8, "reason": "ok"}))
    with client_for(server) as client:
        verdict, _ = client.structured([user("rate it")], Verdict, check=even)
    assert verdict.score == 8
    assert "score must be even" in server.requests[1].last_user


def test_fenced_json_is_accepted() -> None:
    assert extract_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('{"a": [1, 2]}') == {"a": [1, 2]}


@pytest.mark.integration  # a loopback chat server
def test_429_honours_retry_after(server: ChatServer) -> None:
    server.queue(Reply(status=429, headers={"Retry-After": "1"}), Reply(GOOD))
    with client_for(server, backoff=0.0) as client:
        started = time.monotonic()
        verdict, _ = client.structured([user("rate it")], Verdict)
        elapsed = time.monotonic() - started
    assert verdict.score == 7
    assert elapsed >= 1.0
    assert len(server.requests) == 2
    assert server.requests[1].at - server.requests[0].at >= 1.0
    assert client.usage.requests == 1  # the 429 carried no completion


@pytest.mark.integration  # a loopback chat server
def test_retry_budget_ends_a_long_give_up_in_one_line(server: ChatServer) -> None:
    """An endpoint answering 429 (with a large body) again and again: the call ends when its
    retry budget is spent, not after max_retries waits, in one line saying how long it tried."""
    big = {"error": {"message": "rate limited " + "x" * 2_000_000}}
    server.queue(*[Reply(status=429, headers={"Retry-After": "1"}, body=big)] * 10)
    with client_for(server, max_retries=10, retry_budget=2.5, backoff=0.0) as client:
        started = time.monotonic()
        with pytest.raises(LLMError) as info:
            client.structured([user("rate it")], Verdict)
        elapsed = time.monotonic() - started
    message = str(info.value)
    assert elapsed < 2.5 + 1.5, elapsed
    assert 2 <= len(server.requests) <= 3
    assert re.search(rf"answered 429 after {len(server.requests)} attempts in [0-9.]+ s "
                     r"\(retry budget 2.5 s\): rate limited x", message), message
    assert "\n" not in message and len(message) <= 500


@pytest.mark.integration  # a loopback chat server
def test_a_wait_past_the_budget_is_not_started(server: ChatServer) -> None:
    server.queue(Reply(status=503, headers={"Retry-After": "50"}), Reply(GOOD))
    with client_for(server, retry_budget=5, max_backoff=60) as client:
        started = time.monotonic()
        with pytest.raises(LLMError, match=r"answered 503 after 1 attempts in .* budget 5 s"):
            client.complete([user("rate it")])
    assert time.monotonic() - started < 3
    assert len(server.requests) == 1


def test_endpoint_block_passes_its_retry_budget() -> None:
    block = LLMEndpoint(base_url="http://127.0.0.1:9/v1", model="m", retry_budget=42)
    assert block.config().retry_budget == 42


@pytest.mark.integration  # a loopback chat server
def test_500_then_good(server: ChatServer) -> None:
    server.queue(Reply(status=500), Reply(status=503), Reply(GOOD))
    with client_for(server, max_retries=3) as client:
        verdict, _ = client.structured([user("rate it")], Verdict)
    assert verdict.score == 7
    assert len(server.requests) == 3


@pytest.mark.integration  # a loopback chat server
def test_5xx_gives_up_after_max_retries(server: ChatServer) -> None:
    server.queue(*[Reply(status=502)] * 5)
    with client_for(server, max_retries=2) as client, pytest.raises(LLMError) as info:
        client.complete([user("hi")])
    assert "answered 502 after 3 attempts" in str(info.value)
    assert len(server.requests) == 3


@pytest.mark.integration  # a loopback chat server
def test_timeout_is_a_clear_error_and_not_retried(server: ChatServer) -> None:
    server.queue(Reply(GOOD, delay=3.0), Reply(GOOD))
    with client_for(server, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(LLMError, match=r"timed out after 0\.3 s"):
            client.structured([user("rate it")], Verdict)
        assert time.monotonic() - started < 2.0
    assert len(server.requests) == 1


@pytest.mark.integration  # connects to a closed loopback port
def test_unreachable_endpoint_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1,
                       backoff=0.0)
    with ChatClient(config) as client, pytest.raises(LLMError, match="cannot reach"):
        client.complete([user("hi")])


@pytest.mark.integration  # a loopback chat server
def test_falls_back_to_json_object_when_json_schema_is_rejected(server: ChatServer) -> None:
    server.queue(
        Reply(status=400, body={"error": {"message": "response_format json_schema unsupported"}}),
        Reply(GOOD),
        Reply({"score": 3, "reason": "second call"}),
    )
    with client_for(server) as client:
        first, _ = client.structured([user("rate it")], Verdict)
        second, _ = client.structured([user("again")], Verdict)
    assert (first.score, second.score) == (7, 3)
    formats = [r.response_format["type"] for r in server.requests if r.response_format]
    assert formats == ["json_schema", "json_object", "json_object"]  # remembered per client
    hint = server.requests[1].json["messages"][-1]
    assert hint["role"] == "system" and '"score"' in hint["content"] and "JSON" in hint["content"]


@pytest.mark.integration  # a loopback chat server
def test_other_400_is_reported(server: ChatServer) -> None:
    server.queue(Reply(status=400, body={"error": {"message": "context too long"}}))
    with client_for(server) as client, pytest.raises(LLMError, match="400: context too long"):
        client.complete([user("hi")])


@pytest.mark.integration  # a loopback chat server
def test_api_key_never_in_logs_exceptions_or_reprs(
    server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"message": f"invalid key {KEY}"}}
    server.queue(
        Reply(status=429, headers={"Retry-After": "0"}),
        Reply("garbage"),
        Reply(GOOD),
        Reply(status=401, body=echo),
    )
    client = client_for(server)
    client.structured([user("rate it")], Verdict)
    with pytest.raises(LLMError) as info:
        client.complete([user("hi")])
    client.close()
    # the key was sent, where it belongs
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in server.requests)
    text = str(info.value)
    assert "401" in text and "**********" in text
    assert KEY not in text and KEY not in repr(info.value)
    assert caplog.records, "expected retry/repair warnings to be logged"
    assert KEY not in caplog.text
    assert KEY not in repr(client) and KEY not in repr(client.config)
    assert KEY not in str(client.config.model_dump())
    assert KEY not in json.dumps(client.config.model_dump(mode="json"))


@pytest.mark.integration  # a loopback chat server
def test_usage_accumulates_across_calls(server: ChatServer) -> None:
    server.queue(Reply("hello", prompt_tokens=5, completion_tokens=2),
                 Reply("again", prompt_tokens=6, completion_tokens=3))
    with client_for(server) as client:
        assert client.complete([user("a")]).content == "hello"
        assert client.complete([user("b")]).content == "again"
    assert (client.usage.prompt_tokens, client.usage.completion_tokens) == (11, 5)
    assert client.usage.total_tokens == 16 and client.usage.requests == 2


@pytest.mark.integration  # a loopback chat server
def test_llm_endpoint_block_builds_config(server: ChatServer) -> None:
    block = LLMEndpoint(base_url=server.url, model="deepseek-chat", api_key=KEY, timeout=9)
    config = block.config()
    assert isinstance(config.api_key, SecretStr)
    assert config.api_key.get_secret_value() == KEY
    assert (config.base_url, config.model, config.timeout) == (server.url, "deepseek-chat", 9)
    assert KEY not in repr(block) and KEY not in repr(config)
    server.queue(Reply("pong"))
    with block.client() as client:
        assert client.complete([user("ping")]).content == "pong"
    assert server.requests[0].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.integration  # a loopback chat server
def test_repair_quotes_a_bounded_excerpt_of_a_huge_answer(server: ChatServer) -> None:
    from reelflow.llm import REPAIR_QUOTE_CHARS

    huge = '{"score": 7, "reason": "' + "x" * 2_000_000  # 2 MB, never closed
    server.queue(Reply(huge), Reply(huge), Reply(GOOD))
    with client_for(server, repair_attempts=2) as client:
        verdict, _ = client.structured([user("rate it")], Verdict)
    assert verdict.score == 7
    sizes = [len(json.dumps(r.json)) for r in server.requests]
    assert max(sizes) < sizes[0] + 3 * (REPAIR_QUOTE_CHARS + 500), sizes  # not 2 MB, 4 MB
    quoted = server.requests[1].json["messages"][-2]["content"]
    assert quoted.startswith('{"score": 7') and "2000024 characters in all" in quoted
