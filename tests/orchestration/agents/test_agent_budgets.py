"""Budgets inside an agent run: the Researcher stops gathering at the soft threshold, its loop
never crosses the hard limit (even when the provider counts more than the estimate), a
``research: true`` runbook's Researcher spends from that runbook plan's own budget, and every
call is counted by outcome."""

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.testing import FakeTool
from bot.sandbox.llm import FakeModel, Turn, plan_answer
from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.errors import NoMatch
from orchestration.models import Approval, CostEntry, ModelCall, OutboxMessage
from orchestration.opsmetrics import ops_report
from tests.orchestration.agents.test_agents_flow import FINDINGS, READ, TEXT, plane, rows
from tests.orchestration.helpers import REQUESTER


def _read_turn(prompt: int, completion: int) -> Turn:
    return Turn(
        tool_calls=(("fake__read", {}),), prompt_tokens=prompt, completion_tokens=completion
    )


async def test_the_researcher_gathers_no_more_once_the_soft_threshold_is_reached(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    """Spend at 80% after its first call: the hard limit would allow more reads, but the
    Researcher stops; the Planner plans, and the plan waits on the budget card."""
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        model,
        planes,
        budgets={"plan_tokens": 10000, "soft_ratio": 0.8},
        llm_extra={"max_tokens_per_call": 100, "researcher_max_calls": 4},
    )
    model.play(
        [
            _read_turn(7950, 50),  # 8,000 of 10,000 tokens
            Turn(content=plan_answer([READ]), prompt_tokens=300, completion_tokens=50),
        ]
    )
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    assert len(model.requests) == 2
    assert "response_format" not in model.requests[0]  # the Researcher's one call
    assert "response_format" in model.requests[1]  # then the Planner's
    assert len(fake.calls) == 1  # the one read the Researcher asked for
    found = await rows(cp, OutboxMessage, OutboxMessage.kind == "agent_findings")
    assert found[-1].payload["notes"] == [
        "Researcher stopped: the plan's soft budget (80%) is reached after 1 read(s): "
        "8000 of 10000 tokens, $0.0080 of $1.0000"
    ]
    view = await cp.plan_view(opened.plan_id)
    assert (view.status, view.spent_tokens) == ("waiting", 8350)
    cards = await rows(cp, Approval, Approval.plan_id == opened.plan_id)
    assert [c.purpose for c in cards] == ["budget"]


async def test_the_researchers_loop_never_crosses_the_hard_limit_when_the_estimate_undercounts(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    """The provider counts 900 prompt tokens where the text looks like ~150: the next call of
    the same conversation is forecast from the provider's count, so it is not made."""
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        model,
        planes,
        budgets={"plan_tokens": 2000},
        llm_extra={"max_tokens_per_call": 200, "researcher_max_calls": 4},
    )

    def answer(body: dict[str, Any]) -> Turn:
        if "response_format" in body:  # the Planner
            return Turn(content=plan_answer([READ]), prompt_tokens=300, completion_tokens=50)
        return _read_turn(900, 150)

    model.responder = answer
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    costs = await rows(cp, CostEntry, CostEntry.plan_id == opened.plan_id)
    model_costs = [(c.role, c.tokens) for c in costs if c.tool == "llm:scripted-1"]
    # 1,050 spent; the Researcher's second call would have cost >= 1,050 + 200 more.
    assert model_costs == [("researcher", 1050), ("planner", 350)]
    assert sum(tokens for _, tokens in model_costs) <= 2000
    found = await rows(cp, OutboxMessage, OutboxMessage.kind == "agent_findings")
    note = found[-1].payload["notes"][0]
    assert note.startswith("Researcher stopped: the researcher's next model call was not made")
    assert "> the plan's token budget 2000" in note
    calls = await rows(cp, ModelCall, ModelCall.plan_id == opened.plan_id)
    assert sorted((c.role, c.outcome) for c in calls) == [
        ("planner", "ok"),
        ("researcher", "budget_stopped"),
        ("researcher", "ok"),
    ]


BUDGETED_RUNBOOK = """
id: queue-check
version: 1
title: Check the queue
research: true
budget: {tokens: 3000, usd: 0.5}
match:
  keywords: ["queuecheck"]
steps:
  - id: look
    title: Look at the queue
    tool: fake.read
    args: {}
    risk: low
"""


async def test_a_research_runbook_pays_its_researcher_from_its_own_budget(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    """The runbook's budget (3,000 tokens), not the default (50,000): the Researcher's tokens
    are metered to that plan, its findings posted, and the plan's soft threshold and hard
    limit are the runbook's."""
    (tmp_path / "rb").mkdir(exist_ok=True)
    (tmp_path / "rb" / "queue.yaml").write_text(BUDGETED_RUNBOOK)
    cp = await plane(db_url, tmp_path, clock, fake, model, planes)  # plan_tokens: 50000
    model.play(
        [_read_turn(1000, 100), Turn(content=FINDINGS, prompt_tokens=1300, completion_tokens=100)]
    )
    opened = await cp.open_incident(text="queuecheck please", requester=REQUESTER, channel="C1")
    view = await cp.plan_view(opened.plan_id)
    assert (view.runbook_id, view.budget_tokens, view.budget_usd) == ("queue-check", 3000, 0.5)
    costs = await rows(cp, CostEntry, CostEntry.plan_id == opened.plan_id)
    assert [(c.role, c.tokens) for c in costs if c.tool == "llm:scripted-1"] == [
        ("researcher", 1100),
        ("researcher", 1400),
    ]
    assert view.spent_tokens == 2500
    found = await rows(cp, OutboxMessage, OutboxMessage.kind == "agent_findings")
    assert found[-1].plan_id == opened.plan_id
    assert found[-1].payload["findings"][0]["text"] == "queue depth is 9000"
    assert found[-1].payload["budget_tokens"] == 3000
    # 2,500 of the runbook's 3,000 is past its 80%: the runbook's step waits on the card.
    assert view.status == "waiting"
    assert [s.status for s in view.steps] == ["pending"]
    cards = await rows(cp, Approval, Approval.plan_id == opened.plan_id)
    assert [c.purpose for c in cards] == ["budget"]

    # A first call of 2,300 (under the 80%) leaves no room under the runbook's 3,000 for a
    # second one (the default budget would allow it): the Researcher stops, the runbook plans.
    model.play([_read_turn(2200, 100), Turn(content=FINDINGS)])
    again = await cp.open_incident(text="queuecheck again", requester=REQUESTER, channel="C1")
    assert len(model.requests) == 3
    notes = await rows(cp, OutboxMessage, OutboxMessage.kind == "agent_findings")
    assert "> the plan's token budget 3000" in notes[-1].payload["notes"][0]
    stopped = await cp.plan_view(again.plan_id)
    assert stopped.spent_tokens == 2300
    assert stopped.runbook_id == "queue-check"


async def test_calls_are_counted_by_outcome_ok_retried_failed_and_budget_stopped(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        model,
        planes,
        budgets={"plan_tokens": 5000},
        llm_extra={"researcher_max_tool_calls": 0, "max_retries": 1, "max_tokens_per_call": 100},
    )
    start = clock.now()
    # A 429 then the plan: one call, retried.
    model.play([Turn(status=429), Turn(content=plan_answer([READ]))])
    planned = await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1", run=False)
    # Down for the attempt and its one retry: failed; humans get the incident.
    model.play([Turn(status=503)] * 2)
    with pytest.raises(NoMatch, match="model is unavailable"):
        await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    # An invalid answer that costs 4,900 of 5,000: its retry is not made.
    model.play([Turn(content="not json", prompt_tokens=4800, completion_tokens=100)])
    with pytest.raises(NoMatch, match="token budget 5000"):
        await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    assert len(model.requests) == 5

    calls = await rows(cp, ModelCall)
    assert sorted((c.outcome, c.attempts, c.plan_id == planned.plan_id) for c in calls) == [
        ("budget_stopped", 0, False),
        ("failed", 2, False),
        ("ok", 1, False),
        ("retried", 2, True),
    ]
    assert {(c.role, c.model, c.channel) for c in calls} == {("planner", "scripted-1", "C1")}
    window = (start - timedelta(minutes=1), clock.now() + timedelta(minutes=1))
    report = await cp.db.run(lambda s: ops_report(s, *window))
    assert [(c.outcome, c.calls) for c in report.model_calls] == [
        ("budget_stopped", 1),
        ("failed", 1),
        ("ok", 1),
        ("retried", 1),
    ]
    [usage] = report.model_usage
    assert (usage.role, usage.model, usage.calls) == ("planner", "scripted-1", 2)
    assert usage.tokens == sum(c.tokens for c in await rows(cp, CostEntry))
    assert (report.plans_proposed, report.plans_by_llm, report.plans_by_runbook) == (1, 1, 0)
