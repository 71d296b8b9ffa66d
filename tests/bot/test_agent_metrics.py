"""The agents' figures through Slack and ``GET /metrics``: tokens and USD by role and model,
model calls by outcome, plans by planner; read from the database, so replicas agree."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from bot.ops_collector import OpsCollector
from bot.sandbox.limits import check_blocks
from bot.sandbox.llm import FakeModel, Turn, plan_answer
from common import SystemClock
from orchestration.db import Database
from orchestration.models import CostEntry
from tests.bot.scenario import REQUESTER, Stack

Sample = tuple[str, tuple[tuple[str, str], ...]]
AGENT_SERIES = (
    "opsgate_llm_tokens",
    "opsgate_llm_usd",
    "opsgate_llm_calls",
    "opsgate_plans_proposed",
)
NO_READS = json.dumps({"findings": []})


@pytest.fixture
async def model() -> AsyncIterator[FakeModel]:
    fake = FakeModel()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def stack(db_url: str, tmp_path: Path, model: FakeModel) -> AsyncIterator[Stack]:
    llm = {
        "base_url": model.base_url,
        "model": "scripted-1",
        "backoff_initial_s": 0.0,
        "backoff_max_s": 0.0,
        "max_retries": 1,
        "max_tokens_per_call": 100,
        "usd_per_1m_input": 1.0,
        "usd_per_1m_output": 2.0,
    }
    async with Stack(
        db_url=db_url, tmp_path=tmp_path, llm=llm, budgets={"plan_tokens": 50000}
    ) as running:
        yield running


def samples(text: str) -> dict[Sample, float]:
    """The agents' samples of a Prometheus exposition, by name and labels."""
    out: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in AGENT_SERIES:
            for s in family.samples:
                out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def key(name: str, **labels: str) -> Sample:
    return name, tuple(sorted(labels.items()))


async def incident(stack: Stack, text: str) -> None:
    status, _ = await stack.command(text)
    assert status == 200
    await stack.settle()


async def test_metrics_and_incident_metrics_show_the_agents_by_role_model_outcome_and_planner(
    stack: Stack, model: FakeModel, db_url: str
) -> None:
    health = f"http://127.0.0.1:{stack.service.port}/svc/payments/health"
    step: dict[str, Any] = {
        "key": "probe",
        "title": "Probe payments",
        "tool_action": "http.get",
        "args": {"url": health},
        "rationale": "see whether it answers",
    }
    await incident(stack, "checkout-api is down")  # a runbook plans: no model call
    assert model.requests == []
    # The Researcher concludes at once; the Planner's call meets a 429, then answers.
    model.play([Turn(content=NO_READS), Turn(status=429), Turn(content=plan_answer([step]))])
    await incident(stack, "payments queue is backing up")
    # The Researcher's call fails twice (the attempt and its retry): humans get it.
    model.play([Turn(status=503)] * 2)
    await incident(stack, "search results are stale")
    # The Researcher's answer costs 49,500 of 50,000: the Planner's call is not made.
    model.play([Turn(content=NO_READS, prompt_tokens=49400, completion_tokens=100)])
    await incident(stack, "billing exports are late")
    assert len(model.requests) == 6

    assert stack.http is not None
    assert stack.server is not None
    async with stack.http.get(stack.server.make_url("/metrics")) as resp:
        assert resp.status == 200
        served = samples(await resp.text())

    def costs(session: Any) -> list[CostEntry]:
        return list(session.exec(select(CostEntry).where(CostEntry.tool == "llm:scripted-1")))

    entries = await stack.control.db.run(costs)
    for role in ("researcher", "planner"):
        mine = [c for c in entries if c.role == role]
        labels = {"role": role, "model": "scripted-1"}
        assert served[key("opsgate_llm_tokens", **labels)] == sum(c.tokens for c in mine)
        assert served[key("opsgate_llm_usd", **labels)] == pytest.approx(sum(c.usd for c in mine))
    assert served[key("opsgate_llm_tokens", role="researcher", model="scripted-1")] > 49500
    outcomes = {
        (role, outcome): served[
            key("opsgate_llm_calls", role=role, model="scripted-1", outcome=outcome)
        ]
        for role in ("researcher", "planner")
        for outcome in ("ok", "retried", "failed", "budget_stopped")
    }
    assert outcomes == {
        ("researcher", "ok"): 2,
        ("researcher", "retried"): 0,
        ("researcher", "failed"): 1,
        ("researcher", "budget_stopped"): 0,
        ("planner", "ok"): 0,
        ("planner", "retried"): 1,
        ("planner", "failed"): 0,
        ("planner", "budget_stopped"): 1,
    }
    assert served[key("opsgate_plans_proposed", planner="runbook")] == 1
    assert served[key("opsgate_plans_proposed", planner="llm")] == 1

    # Another replica, its own process state and the same database: the same figures.
    other_db = Database(db_url)
    try:
        other = OpsCollector.over(other_db, clock=SystemClock())
        await other.refresh()
        assert samples(generate_latest(other.registry).decode()) == served
    finally:
        other_db.engine.dispose()

    # /incident metrics puts the tokens by role and model beside the planners' share.
    status, _ = await stack.command("metrics")
    assert status == 200
    await stack.settle()
    replies = [e for e in stack.slack.ephemerals(REQUESTER) if "metrics" in e.text]
    shown = json.dumps(replies[-1].blocks, ensure_ascii=False)
    planner_tokens = sum(c.tokens for c in entries if c.role == "planner")
    assert f"planner · scripted-1: {planner_tokens:,} tokens" in shown
    assert "Calls: 2 ok · 1 retried · 1 failed · 1 budget_stopped" in shown
    assert "*Plans by the LLM Planner*\\n50.0% (1 of 2" in shown
    assert check_blocks(replies[-1].blocks or []) == []
