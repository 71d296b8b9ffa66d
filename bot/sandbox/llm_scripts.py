"""Recorded agent runs for the stand-in model (``bot.sandbox.llm``): what ``opsgate demo
--scripted-llm`` plays, so a newcomer sees findings, an LLM plan card and token costs without
a model endpoint.

:class:`RecordedRun` answers each request from its state, the way the recorded run went: the
Researcher first reads the service's health, then its metrics, then reports findings; the
Planner answers with a plan that claims ``risk: low`` for a restart (opsgate ignores it: the
restart's risk is its declaration's, and it waits for a person). The service named in the
incident text is used, so ``/incident payments-api is slow`` plans for ``payments-api``.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from bot.sandbox.llm import Turn, plan_answer

_SERVICE = re.compile(r"<incident>.*?\b([a-z][a-z0-9-]{1,40}-(?:api|db|svc|web))\b", re.DOTALL)


@dataclass(frozen=True)
class RecordedRun:
    """A responder for ``FakeModel``: the Researcher's and the Planner's recorded answers."""

    service_url: str  # the demo service, e.g. http://127.0.0.1:9000
    default_service: str = "checkout-api"

    def __call__(self, body: dict[str, Any]) -> Turn:
        """The next answer of the recorded run for this request."""
        messages = body.get("messages") or []
        service = self._service(messages)
        if body.get("response_format") is not None:
            return Turn(content=self._plan(service), probability=0.86)
        reads = sum(1 for m in messages if m.get("role") == "tool")
        health = f"{self.service_url}/svc/{service}/health"
        if reads == 0:
            return Turn(tool_calls=(("http__get", {"url": health}),))
        if reads == 1:
            return Turn(tool_calls=(("http__get", {"url": f"{self.service_url}/metrics"}),))
        findings = [
            {
                "text": f"{service} health check: see the status and error it answered",
                "evidence": 1,
            },
            {"text": f"demo_http_errors_total for {service} on /metrics", "evidence": 2},
        ]
        return Turn(content=json.dumps({"findings": findings}))

    def _service(self, messages: list[dict[str, Any]]) -> str:
        for message in messages:
            found = _SERVICE.search(str(message.get("content") or ""))
            if found:
                return found.group(1)
        return self.default_service

    def _plan(self, service: str) -> str:
        base = f"{self.service_url}/svc/{service}"
        return plan_answer(
            [
                {
                    "key": "probe",
                    "title": f"Probe {service} health",
                    "tool_action": "http.get",
                    "args": {"url": f"{base}/health"},
                    "rationale": "confirm it still fails before changing anything",
                },
                {
                    "key": "restart",
                    "title": f"Restart {service}",
                    "tool_action": "http.post",
                    "args": {"url": f"{base}/restart"},
                    "risk": "low",
                    "rationale": "health says the pool is exhausted; a restart resets it",
                },
                {
                    "key": "verify",
                    "title": f"Verify {service} is healthy",
                    "tool_action": "http.get",
                    "args": {"url": f"{base}/health"},
                    "expect": {"status": 200},
                    "rationale": "the restart worked only if health answers 200",
                },
            ],
            title=f"restart {service} after confirming it fails",
            confidence=0.72,
        )
