"""The incident's root message tells what happened, and a probe says what it observed.

Signed requests through the real app against the fake Slack Web API: the root is updated in
place (``chat.update``) as steps finish, and a probe's ``healthy``/``end_if`` ends the plan of
a healthy service with nothing to do.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from bot.ids import ActionId
from orchestration.models import OutboxMessage
from tests.bot.scenario import APPROVER_A, APPROVER_B, Stack
from tests.orchestration.helpers import RUNBOOK, write_runbook

OBSERVING = RUNBOOK.replace(
    "    risk: low\n  - id: restart",
    "    risk: low\n    healthy: {{status: 200}}\n    end_if: healthy\n  - id: restart",
)


def root_text(stack: Stack) -> str:
    root = stack.root()
    return root.text + "\n" + json.dumps(root.blocks, ensure_ascii=False)


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(db_url=db_url, tmp_path=tmp_path) as running:
        yield running


async def observing(stack: Stack) -> None:
    """Replace the stack's runbook by one whose probe observes health (a new version)."""
    write_runbook(stack.tmp_path / "runbooks", stack.service.port, text=OBSERVING)
    assert await stack.control.load_knowledge() == []


async def test_the_root_shows_each_outcome_after_approval_success_and_resolve(
    stack: Stack,
) -> None:
    await stack.command("checkout-api is down")
    await stack.settle()
    waiting = root_text(stack)
    assert "✅ succeeded" in waiting  # the probe ran
    assert "🙋 waiting for approval: needs 2 approvals" in waiting
    card = stack.card("Restart checkout-api")
    for user in (APPROVER_A, APPROVER_B):
        await stack.click(card, ActionId.APPROVE.value, user=user)
    await stack.settle()
    assert stack.service.restarts == 1
    done = root_text(stack)
    assert "runs automatically" not in done
    assert "needs 2 approvals" not in done
    assert done.count("✅ succeeded") == 3
    assert "*Plan outcome*\\n✅ Succeeded: All steps succeeded." in done
    await stack.command("resolve restarted and verified")
    await stack.settle()
    resolved = root_text(stack)
    assert "✅ Resolved" in resolved
    assert "🔥 Open" not in resolved
    assert resolved.count("✅ succeeded") == 3  # the outcomes stay on the resolved root


async def test_the_root_names_the_rejecter_and_shows_the_skipped_steps(stack: Stack) -> None:
    await stack.command("checkout-api is down")
    await stack.settle()
    await stack.click(stack.card("Restart checkout-api"), ActionId.REJECT.value, user=APPROVER_A)
    await stack.settle()
    text = root_text(stack)
    assert f"✋ rejected by <@{APPROVER_A}>" in text
    assert "⏭ skipped" in text
    assert "✋ Halted" in text
    assert "needs 2 approvals" not in text


async def test_a_healthy_service_ends_the_plan_with_nothing_to_do(stack: Stack) -> None:
    await observing(stack)
    stack.service.healthy = True
    await stack.command("checkout-api is down")
    await stack.settle()
    thread = stack.texts()
    assert "the call worked, and the service is *healthy*" in thread
    assert "*Observed:* answered 200: healthy" in thread
    assert "✅ Nothing to do" in thread
    assert "The service is healthy ('Probe checkout-api health' answered 200)" in thread
    with pytest.raises(LookupError):
        stack.card("Restart checkout-api")  # no approval asked for a healthy service
    assert stack.service.restarts == 0
    root = root_text(stack)
    assert "🩺 answered 200: healthy" in root
    assert root.count("⏭ skipped") == 2
    assert "*Plan outcome*\\n✅ Nothing to do" in root
    _, body = await stack.command("status")  # answered in the ack, to the asker only
    status = json.dumps(json.loads(body), ensure_ascii=False)
    assert "*✅ Nothing to do*" in status


async def test_an_unhealthy_service_is_observed_and_the_restart_is_proposed(
    stack: Stack,
) -> None:
    await observing(stack)
    await stack.command("checkout-api is down")
    await stack.settle()
    thread = stack.texts()
    assert "the call worked, and the service is *unhealthy*" in thread
    assert "answered 503: unhealthy (expected status 200, got 503)" in thread
    assert "*Probe checkout-api health* succeeded" not in thread  # no contradiction
    stack.card("Restart checkout-api")  # the restart waits for approvals
    assert "🩺 answered 503: unhealthy" in root_text(stack)
    _, body = await stack.command("status")  # answered in the ack, to the asker only
    status = json.dumps(json.loads(body), ensure_ascii=False)
    assert "🩺 *1. Probe checkout-api health*  `http.get` · answered 503: unhealthy" in status


async def test_a_root_update_slack_refuses_is_redone_without_posting_twice(stack: Stack) -> None:
    stack.slack.fail_next("chat.update", 2, status=429, retry_after=0)
    await stack.command("checkout-api is down")
    await stack.settle()
    probes = [m for m in stack.thread() if m.text.startswith("Step succeeded: Probe")]
    assert len(probes) == 1  # the thread message was not posted again
    cards = [m for m in stack.thread() if m.text.startswith("Approval needed")]
    assert len(cards) == 1
    assert "🙋 waiting for approval" in root_text(stack)


async def test_a_shadow_proposal_reads_as_proposed_on_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staged trust: the restart in a shadow scope is 'proposed, not run', not 'skipped'."""
    rollout = {"scopes": [{"id": "restarts", "tools": ["destructive"], "stage": "shadow"}]}
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'r.db'}", tmp_path=tmp_path, rollout=rollout
    ) as stack:
        await stack.command("checkout-api is down")
        await stack.settle()
        root = root_text(stack)
        assert "✅ succeeded" in root  # the read-only probe ran
        assert "👻 proposed, not run (shadow)" in root
        assert "↳ stage: shadow (nothing will run): scope restarts (destructive steps)" in root
        assert "👻 Shadow (proposed; no change made)" in root
        assert stack.service.restarts == 0


async def test_root_updates_queued_together_redraw_the_root_once(stack: Stack) -> None:
    """Slack holds the channel back (429, Retry-After 1 s) while the probe runs and the card
    is asked for: then the root, the probe's result and the card go out in one pass, and the
    root is redrawn once, after the card."""
    stack.slack.fail_next("chat.postMessage", 1, status=429, retry_after=1)
    await stack.command("checkout-api is down")
    await stack.settle()  # the plan waits for approval; its messages wait for Retry-After
    await asyncio.sleep(1.2)
    await stack.settle()
    root = stack.root()
    redraws = [c for c in stack.slack.calls_to("chat.update") if c.get("ts") == root.ts]
    assert len(redraws) == 1
    assert "🙋 waiting for approval: needs 2 approvals" in root_text(stack)
    assert "✅ succeeded" in root_text(stack)  # the probe's outcome, drawn by the card's pass


async def test_a_redraw_left_to_a_later_message_that_did_not_go_out_is_done_at_pass_end(
    stack: Stack,
) -> None:
    """The probe's result leaves the root's redraw to the card after it; when the card is
    not delivered (deferred, dropped), the relay's end of pass redraws the root anyway."""
    await stack.command("checkout-api is down")
    await stack.settle()
    assert stack.app is not None
    notifier = stack.app.surface.relay._notifier
    sent = await stack.control.db.run(
        lambda s: list(s.exec(select(OutboxMessage).where(OutboxMessage.kind == "step_finished")))
    )
    probe = sent[0].model_copy(update={"attempts": 1})  # delivered before: not posted again
    card = probe.model_copy(update={"id": -1, "kind": "approval_requested"})
    root = stack.root()

    def redraws() -> int:
        return len([c for c in stack.slack.calls_to("chat.update") if c.get("ts") == root.ts])

    before = redraws()
    await notifier.deliver(probe, later=[card])
    assert redraws() == before  # left to the card
    await notifier.pass_over(probe.channel)  # the card never went out
    assert redraws() == before + 1
    await notifier.pass_over(probe.channel)
    assert redraws() == before + 1  # owed once, redrawn once
