"""``opsgate demo --scripted-llm``: an incident no runbook matches gets the Researcher's
findings (each naming its span), an LLM plan card whose restart waits for a person despite the
model's "risk: low", and the agents' token costs, all from the stand-in's recorded run."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from sqlmodel import select

from bot.demo.runner import DemoHandles
from bot.sandbox.workspace import Message
from orchestration.models import CostEntry, Span
from tests.bot.demo_helpers import running_demo

RILEY = "U0RILEY01"
TEXT = "/incident checkout-api is slow"


@pytest.fixture
async def demo() -> AsyncIterator[DemoHandles]:
    async with running_demo(break_after_s=3600, scripted_llm=True) as handles:
        yield handles


async def eventually(check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def everything(demo: DemoHandles) -> list[Message]:
    fake = demo.sandbox.fake
    out: list[Message] = []
    for root in fake.messages(demo.sandbox.channel_id):
        out.append(root)
        out += fake.thread(demo.sandbox.channel_id, root.ts)
    return out


def text(messages: list[Message]) -> str:
    return "\n".join(m.text + str(m.blocks) for m in messages)


async def test_scripted_agents_post_findings_an_llm_plan_and_token_costs(demo: DemoHandles) -> None:
    sent = await demo.sandbox.slash_command(RILEY, TEXT)
    assert sent["status"] == 200
    await eventually(lambda: "Researcher findings" in text(everything(demo)))
    await eventually(lambda: "Restart checkout-api" in text(everything(demo)))
    shown = text(everything(demo))
    assert "LLM Planner" in shown  # the root says which planner made the plan
    assert "tokens" in shown
    assert "risk 'low' was ignored" in shown
    # The restart waits for a person: its approval card is posted, nothing restarted.
    await eventually(
        lambda: any(
            any(b.get("type") == "actions" for b in m.blocks or []) for m in everything(demo)
        )
    )
    assert demo.service.state.restarts == {}

    def figures(session):  # type: ignore[no-untyped-def]
        costs = list(session.exec(select(CostEntry)))
        spans = {s.id for s in session.exec(select(Span))}
        return costs, spans

    costs, spans = await demo.control.db.run(figures)
    tokens = sum(c.tokens for c in costs if c.tool.startswith("llm:"))
    assert tokens > 0
    assert {c.role for c in costs if c.tool.startswith("llm:")} == {"researcher", "planner"}
    span_ids = [part.split("`")[1] for part in shown.split("(span ")[1:]]
    assert span_ids
    assert set(span_ids) <= spans
