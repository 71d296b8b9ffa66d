"""One model client for any OpenAI-compatible chat API (OpenAI, Azure, vLLM, Ollama, LiteLLM).

Built on the ``openai`` SDK's ``AsyncOpenAI`` with the SDK's own retries off: opsgate retries
429, 5xx, timeouts and connection errors itself (tenacity, exponential backoff with jitter,
honouring ``Retry-After``), so the number of attempts and the waits are the configured ones
and each attempt is visible. A provider that stays down raises :class:`ModelUnavailable`;
the caller falls back and says so. Errors of the SDK are mapped here and nowhere else.
"""

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from adapters.secrets import SecretSource
from common.redaction import redact_text
from orchestration.config import LlmConfig
from orchestration.errors import OrchestrationError

RETRY_AFTER_CAP_S = 30.0


class ModelUnavailable(OrchestrationError):
    """The model endpoint failed (after retries) or refused the request."""

    def __init__(self, message: str, *, code: str = "llm_unavailable", attempts: int = 1) -> None:
        """A refusal with a plain-words ``message`` (never a credential) after ``attempts``."""
        super().__init__(redact_text(message), code=code)
        self.attempts = attempts


@dataclass(frozen=True)
class Usage:
    """Tokens of one call as the provider counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total(self) -> int:
        """Input plus output tokens."""
        return self.prompt_tokens + self.completion_tokens

    def usd(self, settings: LlmConfig) -> float:
        """What the call cost at the configured prices (cached input at its own price)."""
        cached_price = settings.usd_per_1m_cached_input
        if cached_price is None:
            cached_price = settings.usd_per_1m_input
        fresh = max(self.prompt_tokens - self.cached_tokens, 0)
        return (
            fresh * settings.usd_per_1m_input
            + self.cached_tokens * cached_price
            + self.completion_tokens * settings.usd_per_1m_output
        ) / 1_000_000


@dataclass(frozen=True)
class ToolRequest:
    """A tool call the model asked for (arguments as the model wrote them)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ModelReply:
    """One completed call: the answer, what it cost and how sure the model was."""

    content: str | None
    tool_calls: tuple[ToolRequest, ...]
    usage: Usage
    model: str
    finish_reason: str
    attempts: int
    elapsed_ms: float
    confidence: float | None = None  # mean token probability, when logprobs were returned
    raw: dict[str, Any] = field(default_factory=dict)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError))


def _retry_after(exc: BaseException | None) -> float | None:
    if not isinstance(exc, openai.APIStatusError):
        return None
    value = exc.response.headers.get("retry-after")
    try:
        return min(float(value), RETRY_AFTER_CAP_S) if value is not None else None
    except ValueError:
        return None


def _confidence(choice: Any) -> float | None:
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    values = [math.exp(item.logprob) for item in content if item.logprob is not None]
    return round(sum(values) / len(values), 4) if values else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"the model endpoint answered HTTP {exc.status_code}"
    if isinstance(exc, openai.APITimeoutError):
        return "the model endpoint did not answer in time"
    if isinstance(exc, openai.APIConnectionError):
        return "the model endpoint could not be reached"
    return f"the model call failed ({type(exc).__name__})"


class ModelClient:
    """Chat completions against one configured endpoint and model."""

    def __init__(
        self,
        settings: LlmConfig,
        *,
        secrets: SecretSource | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        http_client: Any = None,
    ) -> None:
        """Resolve the API key (a ``${secret:NAME}``) now; it lives only inside the SDK."""
        self.settings = settings
        key = (secrets or SecretSource()).resolve(settings.api_key) if settings.api_key else ""
        self._sleep = sleep
        self._sdk = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=key or "unused",  # local endpoints take any key; the SDK wants one
            timeout=settings.timeout_s,
            max_retries=0,
            http_client=http_client,
        )

    @property
    def model(self) -> str:
        """The configured model name."""
        return self.settings.model

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._sdk.close()

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        response_format: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> ModelReply:
        """One chat completion, retried on 429 / 5xx / timeouts; raises ModelUnavailable."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "model": s.model,
            "messages": list(messages),
            "max_tokens": max_tokens or s.max_tokens_per_call,
            "temperature": 0,
        }
        if tools:
            kwargs["tools"] = list(tools)
        if response_format is not None:
            kwargs["response_format"] = dict(response_format)
        if s.logprobs:
            kwargs["logprobs"] = True

        def wait(state: RetryCallState) -> float:
            backoff = wait_exponential_jitter(
                multiplier=s.backoff_initial_s, max=s.backoff_max_s, jitter=s.backoff_initial_s
            )(state)
            failed = state.outcome.exception() if state.outcome is not None else None
            after = _retry_after(failed)
            return max(backoff, after) if after is not None else backoff

        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.max_retries + 1),
            wait=wait,
            retry=retry_if_exception(_retryable),
            sleep=self._sleep,
            reraise=True,
        )
        started = time.perf_counter()
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    response = await self._sdk.chat.completions.create(**kwargs)
        except openai.OpenAIError as exc:
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            raise ModelUnavailable(f"{_describe(exc)}{tries}", attempts=attempts) from exc
        elapsed = (time.perf_counter() - started) * 1000
        return _reply(response, attempts=attempts, elapsed_ms=elapsed)


def _reply(response: Any, *, attempts: int, elapsed_ms: float) -> ModelReply:
    if not response.choices:
        raise ModelUnavailable(
            "the model endpoint returned no choices", code="llm_empty", attempts=attempts
        )
    choice = response.choices[0]
    message = choice.message
    usage = response.usage
    details = getattr(usage, "prompt_tokens_details", None) if usage is not None else None
    calls = tuple(
        ToolRequest(id=c.id, name=c.function.name, arguments=c.function.arguments or "")
        for c in (message.tool_calls or ())
        if getattr(c, "function", None) is not None
    )
    return ModelReply(
        content=message.content,
        tool_calls=calls,
        usage=Usage(
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cached_tokens=int(getattr(details, "cached_tokens", 0) or 0) if details else 0,
        ),
        model=str(response.model or ""),
        finish_reason=str(choice.finish_reason or ""),
        attempts=attempts,
        elapsed_ms=elapsed_ms,
        confidence=_confidence(choice),
        raw=json.loads(response.model_dump_json()),
    )


def estimate_tokens(messages: Sequence[Mapping[str, Any]], tools: Any = None) -> int:
    """A prompt's token count, estimated before the call (about 4 characters a token).

    Deliberately generous (rounded up, per-message overhead): the forecast must not let a
    call through that the budget cannot pay for.
    """
    text = json.dumps(list(messages), ensure_ascii=False) + (json.dumps(tools) if tools else "")
    return math.ceil(len(text) / 4) + 4 * len(messages)
