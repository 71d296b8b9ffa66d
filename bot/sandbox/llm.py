"""A local OpenAI-compatible chat API that plays scripted answers (tests, ``opsgate demo``).

``FakeModel`` serves ``POST /v1/chat/completions`` on an ephemeral port, as the OpenAI API
documents it where opsgate depends on it:

- the request must carry ``model`` and a non-empty ``messages`` list (else 400 with OpenAI's
  ``{"error": {"message", "type", "param", "code"}}`` body); with ``api_key`` set, a missing
  or wrong ``Authorization: Bearer`` is a 401 ``invalid_api_key``;
- an answer is a ``chat.completion`` object: one choice whose message has ``content`` or
  ``tool_calls`` (``finish_reason`` ``stop`` or ``tool_calls``), ``usage`` with
  ``prompt_tokens``, ``completion_tokens``, ``total_tokens`` and
  ``prompt_tokens_details.cached_tokens``; ``logprobs`` when the request asked for them and
  the turn gives a probability;
- ``429`` carries ``Retry-After`` (seconds) and ``rate_limit_exceeded``; ``5xx`` a
  ``server_error``.

A script is a list of :class:`Turn` s, one per request, in order; past its end every request
gets a 500 naming the exhausted script (a test that calls more than it planned fails loudly).
Usage not given by a turn is counted as the API would roughly count it: 4 characters a token.
Every request is kept in ``requests`` for tests to inspect.
"""

import asyncio
import json
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Turn:
    """One scripted answer: content, tool calls, or an HTTP error."""

    content: str | None = None
    tool_calls: tuple[tuple[str, dict[str, Any] | str], ...] = ()  # (function name, arguments)
    status: int = 200
    retry_after: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    probability: float | None = None  # reported as every token's logprob when asked
    delay_s: float = 0.0


def _error(
    status: int, message: str, kind: str, code: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


@dataclass
class FakeModel:
    """The stand-in server; ``script`` is consumed one turn per request."""

    script: list[Turn] = field(default_factory=list)
    api_key: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Once the script is used up, a responder (if any) answers from the request itself: a
    # recorded conversation that replays for every incident (``opsgate demo --scripted-llm``).
    responder: Callable[[dict[str, Any]], Turn] | None = None

    def __post_init__(self) -> None:
        """Build the aiohttp app (served by :meth:`start`)."""
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._complete)
        self.app.router.add_get("/v1/models", self._models)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.unauthorized = 0  # requests refused for a missing or wrong API key

    def play(self, turns: Iterable[Turn]) -> None:
        """Append ``turns`` to the script."""
        self.script.extend(turns)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port); returns the base URL (``.../v1``)."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.base_url = f"http://{host}:{server.sockets[0].getsockname()[1]}/v1"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refused(self, request: web.Request) -> web.Response | None:
        if not self.api_key:
            return None
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.unauthorized += 1
            return _error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        return None

    async def _models(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return web.json_response(
            {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
        )

    async def _complete(self, request: web.Request) -> web.Response:  # noqa: PLR0911 - one per refusal
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(
                400,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                "invalid_json",
            )
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _error(
                400, "you must provide a model parameter", "invalid_request_error", "missing_model"
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(
                400,
                "'messages' must be a non-empty array",
                "invalid_request_error",
                "invalid_messages",
            )
        self.requests.append(body)
        if self.script:
            turn = self.script.pop(0)
        elif self.responder is not None:
            turn = self.responder(body)
        else:
            return _error(
                500, "the stand-in's script is exhausted", "server_error", "script_exhausted"
            )
        if turn.delay_s:
            await asyncio.sleep(turn.delay_s)
        if turn.status == 429:
            headers = (
                {"Retry-After": f"{turn.retry_after:g}"} if turn.retry_after is not None else {}
            )
            return _error(
                429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", headers
            )
        if turn.status >= 400:
            return _error(
                turn.status,
                "The server had an error while processing your request.",
                "server_error",
                "server_error",
            )
        return web.json_response(_completion(body, turn))


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _completion(body: dict[str, Any], turn: Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.content, "refusal": None}
    out_text = turn.content or ""
    if turn.tool_calls:
        calls = []
        for name, args in turn.tool_calls:
            arguments = args if isinstance(args, str) else json.dumps(args)
            out_text += name + arguments
            calls.append(
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
        message["tool_calls"] = calls
    prompt = (
        turn.prompt_tokens
        if turn.prompt_tokens is not None
        else _tokens(json.dumps(body["messages"]) + json.dumps(body.get("tools") or ""))
    )
    completion = turn.completion_tokens if turn.completion_tokens is not None else _tokens(out_text)
    logprobs: dict[str, Any] | None = None
    if body.get("logprobs") and turn.probability is not None and turn.content:
        lp = math.log(turn.probability)
        logprobs = {
            "content": [
                {"token": t, "logprob": lp, "bytes": None, "top_logprobs": []}
                for t in turn.content.split()[:50]
            ],
            "refusal": None,
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": "fp_opsgate_standin",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": "tool_calls" if turn.tool_calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": turn.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    }


def plan_answer(
    steps: Sequence[dict[str, Any]],
    *,
    title: str = "diagnose and recover",
    confidence: float | None = 0.7,
) -> str:
    """A Planner answer as a model would write it (JSON text) for a script."""
    body: dict[str, Any] = {"title": title, "steps": list(steps)}
    if confidence is not None:
        body["confidence"] = confidence
    return json.dumps(body)
