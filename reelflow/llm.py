"""An OpenAI-compatible chat client that returns validated pydantic models.

Every LLM step in reelflow (drafting, calibration, camera proposals, translation) needs structured
answers it can trust, from whichever endpoint the studio has (DeepSeek, Kimi, Grok, OpenAI, Ollama,
vLLM). So the client:

- asks for JSON with a JSON Schema (`response_format=json_schema`), and falls back to plain JSON
  mode (`json_object`, schema in the prompt) on endpoints that answer 400 to json_schema;
- validates the answer with pydantic and, when it is malformed, sends the error back for repair a
  bounded number of times before giving up with one clear line;
- retries 429 and 5xx with exponential backoff, honouring `Retry-After`, because rate limits are
  routine on shared endpoints and a batch render must not die on one; but within an overall
  `retry_budget` per call (waits, retries and repairs together), after which it gives up in one
  line that says how long it tried;
- never retries a timeout (a slow generation retried is billed again and is usually slow again);
- counts tokens per client, for the run manifest;
- never lets the API key reach a log line, an exception or a repr: the key travels only in the
  Authorization header of each request, and any text echoed back by a server is scrubbed.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from reelflow.errors import StageError

log = logging.getLogger("reelflow.llm")

T = TypeVar("T", bound=BaseModel)
Message = Mapping[str, str]

_RETRY_STATUSES = {429, 500, 502, 503, 504}
_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


class LLMError(StageError, RuntimeError):
    """An LLM call failed for good; the message is one line and never contains the API key."""


class LLMConfig(BaseModel):
    """Where and how to reach a chat endpoint. `api_key` is a SecretStr: reprs show `**********`."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="e.g. https://api.deepseek.com/v1 or http://127.0.0.1:11434/v1")
    model: str
    api_key: SecretStr | None = None
    timeout: float = Field(60.0, gt=0, description="seconds per request")
    max_retries: int = Field(3, ge=0, le=10, description="retries of 429/5xx/connection errors")
    repair_attempts: int = Field(2, ge=0, le=10, description="re-asks after an invalid answer")
    backoff: float = Field(1.0, ge=0, description="first backoff in seconds, doubled each retry")
    max_backoff: float = Field(60.0, ge=0, description="cap on any wait, Retry-After included")
    retry_budget: float = Field(
        120.0, gt=0,
        description="seconds one call may spend in all (retries, waits, repairs) before it "
                    "gives up; a wait that would end past it is not started",
    )
    temperature: float | None = Field(None, ge=0, le=2)


class Usage(BaseModel):
    """Token counts as the endpoint reports them; summed over calls for the run manifest."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.requests += other.requests


class ChatResult(BaseModel):
    """One assistant answer."""

    content: str
    model: str = ""
    finish_reason: str | None = None
    usage: Usage = Usage()


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def schema_name(model: type[BaseModel]) -> str:
    """OpenAI requires `[a-zA-Z0-9_-]{1,64}` for the json_schema name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", model.__name__)[:64] or "answer"


def extract_json(text: str) -> Any:
    """Parse an answer as JSON, tolerating the ```json fences many models add anyway."""
    match = _FENCE.match(text)
    if match:
        text = match.group(1)
    return json.loads(text)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


REPAIR_QUOTE_CHARS = 4000
"""How much of an invalid answer a repair request quotes back: a 20 MB answer must not be
re-sent (and paid for) whole in every attempt."""


def _excerpt(text: str, limit: int = REPAIR_QUOTE_CHARS) -> str:
    """The start of an answer, at most `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n…[answer cut here: {len(text)} characters in all]"


def _validation_summary(exc: ValidationError, limit: int = 8) -> str:
    """`field.path: message` per error, short enough to send back to the model."""
    parts = []
    for error in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{loc}: {error['msg']}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _server_message(response: httpx.Response) -> str:
    """The error text an OpenAI-compatible server sends (`{"error": {"message": ...}}`)."""
    try:
        body = response.json()
    except ValueError:
        return _one_line(response.text, 200)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return _one_line(str(error.get("message") or error.get("detail") or error), 200)
        return _one_line(str(error), 200)
    return _one_line(str(body), 200)


class ChatClient:
    """A synchronous client for one endpoint and model; `usage` accumulates over its lifetime."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.usage = Usage()
        self._sleep = sleep
        self._json_schema_supported = True
        self._http = httpx.Client(
            base_url=config.base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(config.timeout),
        )

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.config.base_url!r}, model={self.config.model!r})"

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        key = self.config.api_key.get_secret_value() if self.config.api_key else ""
        return text.replace(key, "**********") if key else text

    def _fail(self, message: str) -> LLMError:
        return LLMError(self._scrub(_one_line(message, 500)))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.config.api_key is not None:
            headers["Authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        return headers

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.max_backoff)
        return min(self.config.backoff * (2**attempt), self.config.max_backoff)

    def _over_budget(self, started: float, delay: float) -> bool:
        """True when waiting `delay` more seconds would end past the call's retry budget."""
        return time.monotonic() - started + delay > self.config.retry_budget

    def _gave_up(self, started: float, attempts: int) -> str:
        return (f"after {attempts} attempts in {time.monotonic() - started:.1f} s "
                f"(retry budget {self.config.retry_budget:g} s)")

    def _post(self, payload: dict[str, Any], started: float | None = None) -> httpx.Response:
        """POST /chat/completions with retries; returns the first non-retryable response.

        `started`: when the whole call began (`time.monotonic()`): retries stop at the budget."""
        where = f"{self.config.base_url.rstrip('/')}/chat/completions"
        started = time.monotonic() if started is None else started
        attempt = 0
        while True:
            try:
                response = self._http.post("chat/completions", json=payload,
                                           headers=self._headers())
            except httpx.TimeoutException:
                raise self._fail(
                    f"LLM request to {where} timed out after {self.config.timeout:g} s "
                    f"(model {self.config.model}); raise LLMConfig.timeout or use a faster model"
                ) from None
            except httpx.TransportError as exc:
                delay = self._wait(attempt, None)
                if attempt >= self.config.max_retries or self._over_budget(started, delay):
                    raise self._fail(
                        f"cannot reach LLM endpoint {where}: {type(exc).__name__} "
                        f"({self._gave_up(started, attempt + 1)})"
                    ) from None
                log.warning("LLM endpoint %s unreachable (%s); retrying in %.1f s (%d/%d)",
                            where, type(exc).__name__, delay, attempt + 1, self.config.max_retries)
                self._sleep(delay)
                attempt += 1
                continue
            if response.status_code not in _RETRY_STATUSES:
                return response
            delay = self._wait(attempt, _retry_after(response.headers.get("retry-after")))
            if attempt >= self.config.max_retries or self._over_budget(started, delay):
                raise self._fail(
                    f"LLM endpoint {where} answered {response.status_code} "
                    f"{self._gave_up(started, attempt + 1)}: {_server_message(response)}"
                )
            log.warning("LLM endpoint answered %d; retrying in %.1f s (%d/%d)",
                        response.status_code, delay, attempt + 1, self.config.max_retries)
            self._sleep(delay)
            attempt += 1

    def _parse(self, response: httpx.Response) -> ChatResult:
        where = f"{self.config.base_url.rstrip('/')}/chat/completions"
        if response.status_code != 200:
            raise self._fail(
                f"LLM endpoint {where} answered {response.status_code}: "
                f"{_server_message(response)}"
            )
        try:
            body = response.json()
            choice = body["choices"][0]
            content = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise self._fail(
                f"LLM endpoint {where} sent a body that is not a chat completion: "
                f"{_one_line(response.text, 200)}"
            ) from None
        raw_usage = body.get("usage") or {}
        usage = Usage(
            prompt_tokens=int(raw_usage.get("prompt_tokens") or 0),
            completion_tokens=int(raw_usage.get("completion_tokens") or 0),
            total_tokens=int(raw_usage.get("total_tokens") or 0),
            requests=1,
        )
        if not usage.total_tokens:
            usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        self.usage.add(usage)
        return ChatResult(content=content, model=str(body.get("model") or ""),
                          finish_reason=choice.get("finish_reason"), usage=usage)

    def _payload(self, messages: Sequence[Message],
                 response_format: dict[str, Any] | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.config.model,
                                   "messages": [dict(m) for m in messages]}
        if self.config.temperature is not None:
            payload["temperature"] = self.config.temperature
        if response_format is not None:
            payload["response_format"] = response_format
        return payload

    # -- public -------------------------------------------------------------------------------

    def complete(
        self, messages: Sequence[Message], *, response_format: dict[str, Any] | None = None
    ) -> ChatResult:
        """One chat completion (with retries); raises LLMError on any non-200 answer."""
        log.debug("LLM request: model=%s messages=%d", self.config.model, len(messages))
        return self._parse(self._post(self._payload(messages, response_format)))

    def _complete_json(self, messages: list[dict[str, str]], schema_model: type[BaseModel],
                       started: float) -> ChatResult:
        schema = schema_model.model_json_schema()
        if self._json_schema_supported:
            fmt: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name(schema_model), "schema": schema,
                                "strict": True},
            }
            response = self._post(self._payload(messages, fmt), started)
            if response.status_code != 400:
                return self._parse(response)
            log.warning("LLM endpoint rejected response_format=json_schema (%s); "
                        "falling back to json_object", self._scrub(_server_message(response)))
            self._json_schema_supported = False
        # JSON mode: the schema goes into the prompt (OpenAI also wants the word JSON there).
        hint = system(
            "Answer with a single JSON object, no prose, that validates against this JSON "
            f"Schema:\n{json.dumps(schema, ensure_ascii=False)}"
        )
        return self._parse(
            self._post(self._payload([*messages, hint], {"type": "json_object"}), started)
        )

    def structured(
        self,
        messages: Sequence[Message],
        schema_model: type[T],
        *,
        check: Callable[[T], None] | None = None,
    ) -> tuple[T, Usage]:
        """Ask for an instance of `schema_model`; repair invalid answers; return it and its usage.

        `check` runs after pydantic validation for rules a schema cannot express (e.g. "one entry
        per shot id"); a ValueError it raises is sent back for repair like a validation error.
        """
        convo = [dict(m) for m in messages]
        usage = Usage()
        name = schema_name(schema_model)
        problem = ""
        started = time.monotonic()
        for attempt in range(self.config.repair_attempts + 1):
            if attempt and self._over_budget(started, 0.0):
                raise self._fail(
                    f"LLM gave no valid {name} {self._gave_up(started, attempt)}; "
                    f"last answer {problem}"
                )
            result = self._complete_json(convo, schema_model, started)
            usage.add(result.usage)
            try:
                data = extract_json(result.content)
                instance = schema_model.model_validate(data)
                if check is not None:
                    check(instance)
                return instance, usage
            except json.JSONDecodeError as exc:
                cut = " (the answer was cut off: finish_reason=length)" \
                    if result.finish_reason == "length" else ""
                problem = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{cut}"
            except ValidationError as exc:
                problem = f"does not match the schema: {_validation_summary(exc)}"
            except ValueError as exc:
                problem = f"is inconsistent: {_one_line(str(exc))}"
            log.warning("LLM answer for %s %s (attempt %d/%d)", name, self._scrub(problem),
                        attempt + 1, self.config.repair_attempts + 1)
            convo += [
                assistant(_excerpt(result.content)),
                user(f"Your answer {problem}. Reply again with the complete, corrected JSON "
                     "object only."),
            ]
        raise self._fail(
            f"LLM gave no valid {name} after {self.config.repair_attempts + 1} attempts; "
            f"last answer {problem}"
        )

