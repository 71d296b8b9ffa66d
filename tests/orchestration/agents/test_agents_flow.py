"""The agents in the incident flow, against the OpenAI-compatible stand-in: findings, an LLM
plan whose changes wait for people, refusals, retries, fallbacks and budgets that bite."""

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from adapters.testing import FakeTool
from bot.sandbox.llm import FakeModel, Turn, plan_answer
from common import FakeClock
from orchestration.agents import transcripts
from orchestration.control import ControlPlane
from orchestration.digest import Digest
from orchestration.enums import VoteChoice
from orchestration.errors import NoMatch
from orchestration.models import (
    Approval,
    AuditEvent,
    CostEntry,
    Knowledge,
    ModelCall,
    OutboxMessage,
    Plan,
    Span,
)
from orchestration.opsmetrics import ops_report
from orchestration.replay import load_recording, replay
from tests.orchestration.fakeplans import control_with
from tests.orchestration.helpers import APPROVER_A, REQUESTER

TEXT = "payments queue is backing up"
READ = {
    "key": "look",
    "title": "Read the queue",
    "tool_action": "fake.read",
    "args": {"q": 1},
    "expect": {"ok": True},
    "rationale": "see how deep it is",
}
WRITE = {
    "key": "drain",
    "title": "Drain the queue",
    "tool_action": "fake.write",
    "args": {"q": 1},
    "rationale": "drain it",
    "risk": "low",
}
FINDINGS = json.dumps({"findings": [{"text": "queue depth is 9000", "evidence": 1}]})


def llm(model: FakeModel, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": model.base_url,
        "model": "scripted-1",
        "backoff_initial_s": 0.0,
        "backoff_max_s": 0.0,
        "usd_per_1m_input": 1.0,
        "usd_per_1m_output": 2.0,
    } | extra


async def plane(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
    **config: Any,
) -> ControlPlane:
    llm_extra = config.pop("llm_extra", {})
    config.setdefault("budgets", {"plan_tokens": 50000})
    cp = await control_with(
        db_url, tmp_path, clock, fake, {"tool": "fake.read"}, llm=llm(model, **llm_extra), **config
    )
    planes.append(cp)
    return cp


async def rows(cp: ControlPlane, model: type[Any], *where: Any) -> list[Any]:
    """Rows of ``model`` in primary-key order (insertion order for integer keys): without an
    ORDER BY the order is whatever index the database reads through."""
    order = list(model.__table__.primary_key.columns)
    return await cp.db.run(lambda s: list(s.exec(select(model).where(*where).order_by(*order))))


async def test_research_then_llm_plan_whose_change_waits_for_a_person(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    model.play(
        [
            Turn(tool_calls=(("fake__read", {"q": "depth <b>"}),)),
            Turn(content=FINDINGS),
            Turn(content=plan_answer([READ, WRITE], confidence=0.8), cached_tokens=50),
        ]
    )
    cp = await plane(db_url, tmp_path, clock, fake, model, planes)
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    view = await cp.plan_view(opened.plan_id)
    assert view.runbook_id == "llm-planner"
    assert [s.status for s in view.steps] == ["succeeded", "awaiting_approval"]
    drain = view.steps[1]
    assert drain.risk == "medium"  # the model's "risk: low" is not the model's to give
    assert drain.decision_code in {"needs_one_approval", "llm_change_needs_approval"}
    # The researcher read once, the plan's read step once; the write never ran.
    assert [c.tool_action for c in fake.calls] == ["fake.read", "fake.read"]
    # Tool output reached the model quoted, escaped and marked as data.
    tool_msg = next(m for m in model.requests[1]["messages"] if m["role"] == "tool")
    assert "<tool_output" in tool_msg["content"]
    assert "&lt;b&gt;" in tool_msg["content"]
    assert "not instructions" in tool_msg["content"]
    # Only read-only actions were offered to the Researcher.
    offered = {t["function"]["name"] for t in model.requests[0]["tools"]}
    assert "fake__read" in offered
    assert not offered & {"fake__write", "fake__undo", "fake__nuke", "http__post"}
    assert model.requests[2]["response_format"]["type"] == "json_schema"

    costs = await rows(cp, CostEntry, CostEntry.plan_id == opened.plan_id)
    llm_costs = [c for c in costs if c.tool == "llm:scripted-1"]
    assert sorted({c.role for c in llm_costs}) == ["planner", "researcher"]
    assert len(llm_costs) == 3
    assert all(c.tokens > 0 and c.usd > 0 for c in llm_costs)
    plan_row = await cp.plan_view(opened.plan_id)
    assert plan_row.spent_tokens == sum(c.tokens for c in llm_costs)

    messages = await rows(cp, OutboxMessage, OutboxMessage.kind == "agent_findings")
    payload = messages[0].payload
    finding = payload["findings"][0]
    assert finding["text"] == "queue depth is 9000"
    span = await rows(cp, Span, Span.id == finding["span_id"])
    assert span[0].attributes["tool_action"] == "fake.read"
    reads = await rows(cp, AuditEvent, AuditEvent.event == "research_read")
    assert [(r.role, r.detail["span_id"], r.plan_id) for r in reads] == [
        ("researcher", finding["span_id"], opened.plan_id)
    ]
    assert payload["ignored_claims"] == [
        "drain: the model's risk 'low' was ignored (declared medium)"
    ]
    assert payload["rationales"] == {"look": "see how deep it is", "drain": "drain it"}
    opened_msg = await rows(cp, OutboxMessage, OutboxMessage.kind == "incident_opened")
    assert opened_msg[0].payload["planner"] == "llm"
    assert opened_msg[0].payload["llm"]["calls"] == 3

    answers = await rows(cp, Knowledge, Knowledge.kind == "llm_answer")
    assert len(answers) == 1
    assert answers[0].body["model"] == "scripted-1"
    plan_rows = await rows(cp, Plan, Plan.id == opened.plan_id)
    assert f"llm_answer:{answers[0].key}" in plan_rows[0].knowledge_pins
    kept = await cp.db.run(lambda s: transcripts.of_plan(s, opened.plan_id))
    assert {t.role for t in kept} == {"researcher", "planner"}
    assert transcripts.unpack(kept[0].body)[0]["request"][0]["role"] == "system"
    assert all(len(t.body) < len(json.dumps(transcripts.unpack(t.body))) for t in kept)
    # Each call is counted by outcome too.
    calls = await rows(cp, ModelCall, ModelCall.plan_id == opened.plan_id)
    assert sorted((c.role, c.outcome, c.attempts) for c in calls) == [
        ("planner", "ok", 1),
        ("researcher", "ok", 1),
        ("researcher", "ok", 1),
    ]
    # Kept for the retention (30 days by default), then pruned, the call counts with them.
    clock.advance(29 * 86400)
    assert await cp.prune_transcripts() == 0
    assert len(await rows(cp, ModelCall, ModelCall.plan_id == opened.plan_id)) == 3
    clock.advance(1 * 86400 + 1)
    assert await cp.prune_transcripts() == 2
    assert await cp.db.run(lambda s: transcripts.of_plan(s, opened.plan_id)) == []
    assert await rows(cp, ModelCall, ModelCall.plan_id == opened.plan_id) == []


async def test_researcher_asking_for_a_write_is_refused_and_nothing_runs(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    model.play(
        [
            Turn(tool_calls=(("fake__write", {"q": 1}), ("fake__nuke", {}))),
            Turn(content=json.dumps({"findings": []})),
            Turn(content=plan_answer([READ])),
        ]
    )
    cp = await plane(db_url, tmp_path, clock, fake, model, planes)
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1", run=False)
    assert fake.calls == []
    refused = await rows(cp, AuditEvent, AuditEvent.event == "research_refused")
    assert sorted(r.detail["tool_action"] for r in refused) == ["fake.nuke", "fake.write"]
    assert {r.role for r in refused} == {"researcher"}
    tool_msgs = [m for m in model.requests[1]["messages"] if m["role"] == "tool"]
    assert all(m["content"].startswith("refused:") for m in tool_msgs)
    assert opened.status == "proposed"


async def test_malformed_answers_are_retried_twice_then_humans_get_the_validation_error(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    cp = await plane(
        db_url, tmp_path, clock, fake, model, planes, llm_extra={"researcher_max_tool_calls": 0}
    )
    model.play(
        [
            Turn(content="{not json"),
            Turn(content=plan_answer([{**READ, "tool_action": "fake.read", "args": []}])),
            Turn(content=plan_answer([READ])),
        ]
    )
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, run=False)
    assert opened.status == "proposed"
    assert len(model.requests) == 3
    assert "not valid JSON" in model.requests[1]["messages"][-1]["content"]

    model.play([Turn(content="nope")] * 3)
    with pytest.raises(
        NoMatch, match="still invalid after 2 retries: the answer is not valid JSON"
    ):
        await cp.open_incident(text=TEXT, requester=REQUESTER)
    assert len(model.requests) == 6  # nothing beyond the two retries
    refusals = await rows(cp, AuditEvent, AuditEvent.event == "plan_not_found")
    assert "over to humans" in refusals[-1].detail["reason"]


async def test_unregistered_action_is_invalid(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    cp = await plane(
        db_url, tmp_path, clock, fake, model, planes, llm_extra={"researcher_max_tool_calls": 0}
    )
    bad = plan_answer([{**READ, "tool_action": "shell.rm"}])
    model.play([Turn(content=bad)] * 3)
    with pytest.raises(NoMatch, match="not a registered tool action"):
        await cp.open_incident(text=TEXT, requester=REQUESTER)


async def test_a_429_storm_is_waited_out_and_a_provider_that_stays_down_goes_to_humans(
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
        llm_extra={"researcher_max_tool_calls": 0, "max_retries": 3},
    )
    model.play(
        [
            Turn(status=429, retry_after=0),
            Turn(status=429, retry_after=0),
            Turn(status=502),
            Turn(content=plan_answer([READ])),
        ]
    )
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, run=False)
    assert opened.status == "proposed"
    assert len(model.requests) == 4

    model.play([Turn(status=429, retry_after=0)] * 10)
    with pytest.raises(NoMatch, match=r"model is unavailable .*HTTP 429 after 4 attempts.*humans"):
        await cp.open_incident(text=TEXT, requester=REQUESTER)
    assert len(model.requests) == 8


async def test_runbooks_win_no_model_call(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    cp = await plane(db_url, tmp_path, clock, fake, model, planes)
    opened = await cp.open_incident(text="fakefix now", requester=REQUESTER)
    assert (await cp.plan_view(opened.plan_id)).runbook_id == "fake-fix"
    assert model.requests == []


async def test_usage_past_the_soft_threshold_posts_the_budget_card_and_the_plan_stops_unapproved(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    """The background example: 2,000 tokens a plan, a card at 80%, a stop after the wait in
    plain words; approved in time, the plan goes on."""
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        model,
        planes,
        budgets={"plan_tokens": 2000, "soft_ratio": 0.8, "soft_wait_minutes": 5},
        llm_extra={"max_tokens_per_call": 100},
    )
    model.play(
        [
            Turn(tool_calls=(("fake__read", {}),), prompt_tokens=500, completion_tokens=100),
            Turn(content=FINDINGS, prompt_tokens=600, completion_tokens=60),
            Turn(content=plan_answer([READ]), prompt_tokens=300, completion_tokens=90),
        ]
    )
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    view = await cp.plan_view(opened.plan_id)
    assert view.spent_tokens == 1650  # 82% of 2,000
    assert view.status == "waiting"  # the budget card, before the first step
    cards = await rows(cp, AuditEvent, AuditEvent.event == "approval_requested")
    assert cards[-1].detail["purpose"] == "budget"
    assert [c.tool_action for c in fake.calls] == ["fake.read"]  # the Researcher's read only
    assert "82% of the plan budget is spent" in cards[-1].detail["reason"]
    clock.advance(4 * 60)
    assert await cp.expire_approvals() == 0  # still inside the 5 minutes
    clock.advance(61)
    assert await cp.expire_approvals() == 1
    stopped = await cp.plan_view(opened.plan_id)
    assert stopped.status == "halted"
    assert stopped.status_reason == (
        "No decision on continuing past the soft budget before the approval expired; "
        "the plan stopped."
    )
    assert len(fake.calls) == 1

    # The same run again, and someone approves within the minutes: the plan goes on.
    model.play(
        [
            Turn(tool_calls=(("fake__read", {}),), prompt_tokens=500, completion_tokens=100),
            Turn(content=FINDINGS, prompt_tokens=600, completion_tokens=60),
            Turn(content=plan_answer([READ]), prompt_tokens=300, completion_tokens=90),
        ]
    )
    again = await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    assert (await cp.plan_view(again.plan_id)).status == "waiting"
    card = await rows(cp, Approval, Approval.plan_id == again.plan_id)
    assert [c.purpose for c in card] == ["budget"]
    clock.advance(4 * 60)
    await cp.vote(nonce=card[0].nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE, reason="")
    went_on = await cp.plan_view(again.plan_id)
    assert went_on.status == "succeeded"
    assert [s.status for s in went_on.steps] == ["succeeded"]
    assert len(fake.calls) == 3  # its Researcher's read, then the plan's own step


async def test_at_the_hard_limit_nothing_more_is_called(
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
        budgets={"plan_tokens": 2400},
        llm_extra={"max_tokens_per_call": 200, "researcher_max_calls": 6},
    )
    model.play(
        [Turn(tool_calls=(("fake__read", {}),), prompt_tokens=800, completion_tokens=100)] * 6
    )
    with pytest.raises(NoMatch, match="token budget 2400"):
        await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    # 900 + 900 spent; a third call forecasts at least the 900 the provider counted for the
    # last prompt and answer, plus 200 more: neither it nor the Planner was called.
    assert len(model.requests) == 2
    stops = await rows(cp, AuditEvent, col(AuditEvent.event) == "plan_not_found")
    assert stops[-1].code == "no_match"
    # The two calls made still cost: metered without a plan, and said in the audit record.
    assert stops[-1].detail["tokens"] == 1800
    assert stops[-1].detail["agents_failure"] == "budget_exceeded"
    costs = await rows(cp, CostEntry, CostEntry.runbook_id == "llm-planner")
    assert [(c.role, c.tokens, c.channel) for c in costs] == [("researcher", 900, "C1")] * 2
    assert {c.plan_id for c in costs} == {f"unplanned-{stops[-1].correlation_id}"}


LENIENT_PACK = """
version: 1
approval:
  low: {quorum: 0}
  medium: {quorum: 0}
  high: {quorum: 1}
  critical: {deny: true}
"""


async def test_an_llm_change_waits_for_a_person_even_where_the_pack_lets_changes_run_alone(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text(LENIENT_PACK)
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        model,
        planes,
        policies=str(lenient),
        llm_extra={"researcher_max_tool_calls": 0},
    )
    assert cp.rt.pack.approval.medium.quorum == 0
    model.play([Turn(content=plan_answer([WRITE]))])
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    view = await cp.plan_view(opened.plan_id)
    assert view.steps[0].status == "awaiting_approval"
    assert view.steps[0].decision_code == "llm_change_needs_approval"
    assert fake.calls == []


async def test_the_pinned_answer_replays_to_the_same_plan_hash(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    cp = await plane(
        db_url, tmp_path, clock, fake, model, planes, llm_extra={"researcher_max_tool_calls": 0}
    )
    model.play([Turn(content=plan_answer([READ]))])
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    assert (await cp.plan_view(opened.plan_id)).status == "succeeded"
    calls = len(model.requests)
    recording = await cp.db.run(lambda s: load_recording(s, opened.plan_id))
    report = await replay(
        recording,
        config=cp.config,
        tools=cp.rt.tools,
        signer=cp.rt.signer,
        pack=cp.rt.pack,
    )
    assert report.plan_hash_reproduced is True
    assert len(model.requests) == calls  # the answer is knowledge: no model call
    # A different answer under the same pin would not reproduce it.
    pinned = next(k for k in recording.knowledge if k["kind"] == "llm_answer")
    pinned["body"] = {**pinned["body"], "answer": plan_answer([READ], title="other")}
    again = await replay(
        recording, config=cp.config, tools=cp.rt.tools, signer=cp.rt.signer, pack=cp.rt.pack
    )
    assert again.plan_hash_reproduced is False


async def test_log_probabilities_become_the_confidence_on_the_plan_and_in_failures(
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
        llm_extra={"researcher_max_tool_calls": 0, "logprobs": True},
    )
    model.play([Turn(content=plan_answer([READ], confidence=None), probability=0.9)])
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, run=False)
    assert model.requests[0]["logprobs"] is True
    proposed = await rows(cp, AuditEvent, AuditEvent.event == "llm_plan_proposed")
    assert proposed[0].plan_id == opened.plan_id
    assert proposed[0].detail["confidence"] == pytest.approx(0.9)
    assert proposed[0].detail["token_confidence"] == pytest.approx(0.9)

    model.play([Turn(content="nope", probability=0.4)] * 3)
    with pytest.raises(NoMatch, match="token confidence of the last answer 40%"):
        await cp.open_incident(text=TEXT, requester=REQUESTER)


async def test_the_bot_schedules_transcript_pruning_only_with_a_model(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    from bot.app import _scheduler  # noqa: PLC0415 - the bot's scheduler, only for this test
    from bot.digest_job import DigestPoster  # noqa: PLC0415

    with_model = await plane(db_url, tmp_path, clock, fake, model, planes)
    jobs = _scheduler(
        with_model, DigestPoster(control=with_model, client=None), expiry_interval_s=5
    )
    assert "prune-transcripts" in {job.id for job in jobs.get_jobs()}
    without = await control_with(db_url, tmp_path, clock, fake, {"tool": "fake.read"})
    planes.append(without)
    jobs = _scheduler(without, DigestPoster(control=without, client=None), expiry_interval_s=5)
    assert "prune-transcripts" not in {job.id for job in jobs.get_jobs()}


async def test_the_api_key_comes_from_its_secret_and_reaches_only_the_endpoint(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    planes: list[ControlPlane],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "sk-standin-0123456789abcdef"
    guarded = FakeModel(api_key=key)
    await guarded.start()
    try:
        extra = {"researcher_max_tool_calls": 0, "api_key": "${secret:LLM_KEY}"}
        cp = await plane(db_url, tmp_path, clock, fake, guarded, planes, llm_extra=extra)
        # Not set: no call is made, and the refusal says where to set it.
        with pytest.raises(NoMatch, match="OPSGATE_SECRET_LLM_KEY"):
            await cp.open_incident(text=TEXT, requester=REQUESTER)
        assert guarded.requests == []

        monkeypatch.setenv("OPSGATE_SECRET_LLM_KEY", key)
        guarded.play([Turn(content=plan_answer([READ]))])
        opened = await cp.open_incident(text=TEXT, requester=REQUESTER, run=False)
        assert opened.status == "proposed"
        kept = await cp.db.run(lambda s: transcripts.of_plan(s, opened.plan_id))
        audits = await rows(cp, AuditEvent)
        stored = json.dumps([transcripts.unpack(t.body) for t in kept]) + repr(audits)
        assert key not in stored

        # A wrong key is refused by the endpoint (401): not retried, over to humans.
        monkeypatch.setenv("OPSGATE_SECRET_LLM_KEY", "sk-wrong")
        other = await plane(db_url, tmp_path, clock, fake, guarded, planes, llm_extra=extra)
        assert guarded.unauthorized == 0
        with pytest.raises(NoMatch, match="HTTP 401"):
            await other.open_incident(text=TEXT, requester=REQUESTER)
        assert guarded.unauthorized == 1
    finally:
        await guarded.stop()


async def test_the_digest_shows_tokens_by_role_and_model_and_the_planners_share(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    from bot.digest import digest_blocks, digest_text  # noqa: PLC0415 - the bot's rendering

    cp = await plane(db_url, tmp_path, clock, fake, model, planes)
    model.play(
        [
            Turn(tool_calls=(("fake__read", {}),), prompt_tokens=300, completion_tokens=20),
            Turn(content=FINDINGS, prompt_tokens=350, completion_tokens=30),
            Turn(content=plan_answer([READ]), prompt_tokens=400, completion_tokens=80),
        ]
    )
    start = clock.now()
    await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    await cp.open_incident(text="fakefix now", requester=REQUESTER, channel="C1")
    clock.advance(60)
    day = start.date()
    report = await cp.db.run(
        lambda s: ops_report(s, start - timedelta(minutes=1), clock.now() + timedelta(minutes=1))
    )
    roles = {a.key: a for a in report.by_role}
    assert roles["researcher"].tokens == 700
    assert roles["planner"].tokens == 480
    tools = {a.key: a for a in report.by_tool}
    assert tools["llm:scripted-1"].tokens == 1180
    assert tools["llm:scripted-1"].usd == pytest.approx((1050 * 1.0 + 130 * 2.0) / 1e6)
    assert (report.plans_proposed, report.plans_by_llm, report.llm_plan_share) == (2, 1, 0.5)
    text = digest_text(Digest(day=day, timezone="UTC", report=report))
    assert "plans by the LLM Planner    50.0% (1/2 plans proposed" in text
    assert "llm:scripted-1" in text
    assert "researcher  scripted-1                     700 tokens" in text
    assert "planner     scripted-1                     480 tokens" in text
    assert "calls: 3 ok" in text
    fields = digest_blocks(Digest(day=day, timezone="UTC", report=report))
    shown = json.dumps(fields.blocks, ensure_ascii=False)
    assert "Plans by the LLM Planner" in shown
    assert "researcher · scripted-1: 700 tokens" in shown
    assert "planner · scripted-1: 480 tokens" in shown


RESEARCHED_RUNBOOK = """
id: queue-check
version: 1
title: Check the queue
research: true
match:
  keywords: ["queuecheck"]
steps:
  - id: look
    title: Look at the queue
    tool: fake.read
    args: {}
    risk: low
"""


async def test_a_runbook_asking_for_research_gets_findings_beside_its_own_plan(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    (tmp_path / "rb").mkdir(exist_ok=True)
    (tmp_path / "rb" / "queue.yaml").write_text(RESEARCHED_RUNBOOK)
    cp = await plane(db_url, tmp_path, clock, fake, model, planes)
    model.play([Turn(tool_calls=(("fake__read", {"q": 2}),)), Turn(content=FINDINGS)])
    opened = await cp.open_incident(text="queuecheck please", requester=REQUESTER, channel="C1")
    view = await cp.plan_view(opened.plan_id)
    assert view.runbook_id == "queue-check"  # the runbook plans; the Planner is not asked
    assert len(model.requests) == 2
    assert all("response_format" not in r for r in model.requests)
    found = await rows(cp, OutboxMessage, OutboxMessage.kind == "agent_findings")
    assert found[0].payload["findings"][0]["text"] == "queue depth is 9000"
    root = await rows(cp, OutboxMessage, OutboxMessage.kind == "incident_opened")
    assert root[-1].payload["planner"] == "runbook"
    costs = await rows(cp, CostEntry, CostEntry.plan_id == opened.plan_id)
    assert {c.role for c in costs if c.tool == "llm:scripted-1"} == {"researcher"}
    assert view.spent_tokens == sum(c.tokens for c in costs if c.tool == "llm:scripted-1")

    # Its stored body names the flag; a runbook without it is stored as it always was.
    stored = await rows(cp, Knowledge, Knowledge.kind == "runbook")
    bodies = {k.key: k.body for k in stored}
    assert bodies["queue-check"]["research"] is True
    assert "research" not in bodies["fake-fix"]

    # A model that is down does not keep the runbook from planning; the thread says so.
    model.play([Turn(status=500)] * 4)
    again = await cp.open_incident(text="queuecheck again", requester=REQUESTER, channel="C1")
    assert (await cp.plan_view(again.plan_id)).runbook_id == "queue-check"
    notes = await rows(cp, OutboxMessage, OutboxMessage.kind == "agent_findings")
    assert "could not finish: the model is unavailable" in notes[-1].payload["notes"][-1]


async def test_the_researchers_tool_call_cap_and_the_runs_wall_time_bound_it(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    cp = await plane(
        db_url, tmp_path, clock, fake, model, planes, llm_extra={"researcher_max_tool_calls": 1}
    )
    model.play(
        [
            Turn(tool_calls=(("fake__read", {"q": 1}), ("fake__read", {"q": 2}))),
            Turn(content=FINDINGS),
            Turn(content=plan_answer([READ])),
        ]
    )
    await cp.open_incident(text=TEXT, requester=REQUESTER, run=False)
    assert [c.args for c in fake.calls] == [{"q": 1}]  # the second read was over the cap
    refused = await rows(cp, AuditEvent, AuditEvent.event == "research_refused")
    assert [r.code for r in refused] == ["research_cap"]

    slow = await plane(
        db_url, tmp_path, clock, fake, model, planes, llm_extra={"agent_wall_s": 0.3}
    )
    model.play([Turn(content=FINDINGS, delay_s=3)])  # far past the run's wall time
    with pytest.raises(NoMatch, match=r"wall time \(0.3 s\) was used up"):
        await slow.open_incident(text=TEXT, requester=REQUESTER)
    cut = await rows(slow, ModelCall, col(ModelCall.plan_id).startswith("unplanned-"))
    assert [(c.role, c.outcome) for c in cut] == [("researcher", "failed")]  # cut off, counted


async def test_the_digest_puts_people_time_beside_tokens_and_calls_when_priced(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    model: FakeModel,
    planes: list[ControlPlane],
) -> None:
    from bot.blocks import usd  # noqa: PLC0415 - the bot's rendering of the report
    from bot.digest import digest_blocks, digest_text  # noqa: PLC0415

    cp = await plane(
        db_url, tmp_path, clock, fake, model, planes, llm_extra={"researcher_max_tool_calls": 0}
    )
    model.play([Turn(content=plan_answer([WRITE]))])
    start = clock.now()
    opened = await cp.open_incident(text=TEXT, requester=REQUESTER, channel="C1")
    cards = await rows(cp, Approval, Approval.plan_id == opened.plan_id)
    clock.advance(90)
    await cp.vote(nonce=cards[0].nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE, reason="")
    window = (start - timedelta(minutes=1), clock.now() + timedelta(minutes=1))
    report = await cp.db.run(lambda s: ops_report(s, *window))
    assert report.people_s == pytest.approx(90)
    assert [(p.voter, p.votes) for p in report.people] == [(APPROVER_A, 1)]
    assert report.by_tool[0].tokens > 0  # tokens and the people time side by side

    priced = Digest(day=start.date(), timezone="UTC", report=report, people_usd_per_hour=60)
    text = digest_text(priced)
    assert f"1m 30s over 1 vote(s), {usd(1.5)} at {usd(60)}/h" in text
    assert APPROVER_A in text
    assert "People time" in json.dumps(digest_blocks(priced).blocks)
    unpriced = Digest(day=start.date(), timezone="UTC", report=report)
    assert "People time" not in digest_text(unpriced)  # without a rate: the digest as before
