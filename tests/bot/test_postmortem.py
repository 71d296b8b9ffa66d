"""Runbook steps that use incident data: a PagerDuty-opened incident acknowledges its own
PagerDuty incident (``${incident:pagerduty_id}``) and files its postmortem ticket with the
timeline and costs (``${incident:timeline}``, ``${incident:costs}``), through the real app."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from adapters.testing.pagerduty import FakePagerDuty
from adapters.testing.tickets import FakeGitHub
from bot.ids import ActionId
from orchestration.models import Plan, Step
from tests.bot.scenario import APPROVER_A, Stack

ALERT_CHANNEL = "C0ALERTS"
SECRET = "pd-webhook-secret-0123456789"  # the test subscription's secret

RUNBOOK = """\
id: latency-postmortem
version: 1
title: Take a latency page and file its postmortem
match:
  keywords: ["latency"]
steps:
  - id: ack
    title: Acknowledge the page
    tool: pagerduty.acknowledge
    args: {incident_id: "${incident:pagerduty_id}"}
    risk: medium
  - id: postmortem
    title: File the postmortem
    tool: ticket.create
    args:
      title: "Postmortem: ${incident:text}"
      body: "Timeline:\\n${incident:timeline}\\n\\nCosts:\\n${incident:costs}"
      labels: [postmortem]
    risk: medium
"""


@pytest.fixture
async def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Stack, FakePagerDuty, FakeGitHub]]:
    pagerduty, github = FakePagerDuty(), FakeGitHub()
    await pagerduty.start()
    await github.start()
    monkeypatch.setenv("OPSGATE_SECRET_PAGERDUTY_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("OPSGATE_SECRET_PAGERDUTY_TOKEN", pagerduty.token)
    monkeypatch.setenv("OPSGATE_SECRET_GITHUB_TOKEN", github.token)
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "latency-postmortem.yaml").write_text(RUNBOOK)
    unlimited = {"rate_per_s": 10000, "burst": 10000}
    async with Stack(
        db_url=f"sqlite:///{tmp_path / 'pm.db'}",
        tmp_path=tmp_path,
        slack={"alert_channel": ALERT_CHANNEL, "channel_rate_per_s": 1000},
        intake={"pagerduty": {"webhook_secret": "${secret:PAGERDUTY_WEBHOOK_SECRET}"}},
        adapters={
            "http": unlimited,
            "pagerduty": {
                "api_url": pagerduty.base_url,
                "token": "${secret:PAGERDUTY_TOKEN}",
                "from_email": "oncall@example.com",
                **unlimited,
            },
            "ticket": {
                "backend": "github",
                "github": {
                    "api_url": github.base_url,
                    "repo": "acme/ops",
                    "token": "${secret:GITHUB_TOKEN}",
                },
                **unlimited,
            },
        },
    ) as stack:
        assert stack.server is not None
        pagerduty.subscribe(str(stack.server.make_url("/alerts/pagerduty")), SECRET)
        yield stack, pagerduty, github
    await pagerduty.stop()
    await github.stop()


async def test_a_paged_incident_acks_its_page_and_files_a_postmortem_with_timeline_and_costs(
    world: tuple[Stack, FakePagerDuty, FakeGitHub],
) -> None:
    stack, pagerduty, github = world
    page = await pagerduty.trigger("payments-api latency above 2s")
    await stack.settle()
    steps = await stack.control.db.run(lambda s: list(s.exec(select(Step))))
    # The plan, the approval card and the grant hold the reference, never the value.
    assert {s.args.get("incident_id") for s in steps} >= {"${incident:pagerduty_id}"}
    await stack.click(
        stack.card("Acknowledge the page", ALERT_CHANNEL), ActionId.APPROVE.value, user=APPROVER_A
    )
    await stack.settle()
    assert pagerduty.incidents[page["id"]]["status"] == "acknowledged"
    await stack.click(
        stack.card("File the postmortem", ALERT_CHANNEL), ActionId.APPROVE.value, user=APPROVER_A
    )
    await stack.settle()
    ((_repo, number),) = github.issues
    issue = github.issues[("acme/ops", number)]
    assert issue["title"] == "Postmortem: payments-api latency above 2s"
    assert "Timeline:" in issue["body"]
    assert "incident_opened  by pagerduty" in issue["body"]
    assert "step_succeeded" in issue["body"] or "step_started" in issue["body"]
    assert "pagerduty: $0.0000 (1 calls)" in issue["body"]
    assert "${incident" not in issue["body"]
    (plan,) = await stack.control.db.run(lambda s: list(s.exec(select(Plan))))
    assert plan.status == "succeeded"
