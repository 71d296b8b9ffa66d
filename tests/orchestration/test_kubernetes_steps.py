"""Kubernetes steps through the whole control plane, against the stand-in API server.

The kubernetes tool is built from the config (``adapters.kubernetes``) by ``build_registry``,
guarded like every tool; the stand-in enforces authentication, RBAC and token expiry.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import select

from adapters import GrantSigner
from adapters.testing.kubernetes import KubeApiStandIn, service_account_user
from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.enums import VoteChoice
from orchestration.models import AuditEvent, OutboxMessage, SQLModel
from orchestration.toolbox import build_registry
from tests.adapters.test_kubernetes import ACCOUNTS, MINT_TOKEN, READ_TOKEN, SA_NS, seed
from tests.orchestration.fakeplans import pending_nonce
from tests.orchestration.helpers import (
    APPROVER_A,
    APPROVER_B,
    REQUESTER,
    make_config,
    make_control,
)

CANARY_RUNBOOK = """
id: k8s-restart
version: 1
title: Restart a deployment
match:
  patterns: ['(?P<service>[a-z][a-z0-9-]{{1,40}}) is down']
steps:
  - id: restart
    title: Restart {{service}}
    tool: kubernetes.rollout_restart
    args: {{namespace: shop, name: "{{service}}"}}
    risk: high
    expect: {{status: 200}}
    canary:
      args: {{namespace: shop-canary, name: "{canary}"}}
"""

SCALE_RUNBOOK = """
id: k8s-scale
version: 1
title: Scale a deployment down
match:
  patterns: ['(?P<service>[a-z][a-z0-9-]{1,40}) is overloaded']
steps:
  - id: scale
    title: Scale {service} to 1
    tool: kubernetes.scale
    args: {namespace: shop, name: "{service}", replicas: 1}
    risk: medium
  - id: verify
    title: Check {service} is ready
    tool: kubernetes.get
    args: {namespace: shop, kind: deployments, name: "{service}"}
    expect: {json: {ready_replicas: 99}}
    risk: low
"""


@pytest.fixture
async def api(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KubeApiStandIn]:
    monkeypatch.setenv("OPSGATE_SECRET_K8S_READ", READ_TOKEN)
    monkeypatch.setenv("OPSGATE_SECRET_K8S_MINT", MINT_TOKEN)
    async with KubeApiStandIn(clock=clock) as server:
        seed(server)
        yield server


async def kube_control(
    db_url: str, tmp_path: Path, clock: FakeClock, api: KubeApiStandIn, runbook: str
) -> ControlPlane:
    folder = tmp_path / "rb"
    folder.mkdir(exist_ok=True)
    (folder / "k8s.yaml").write_text(runbook, encoding="utf-8")
    kube: dict[str, Any] = {
        "server": api.url,
        "namespaces": ["shop", "shop-canary"],
        "read_token": "${secret:K8S_READ}",
        "minting_token": "${secret:K8S_MINT}",
        "service_account_namespace": SA_NS,
        "service_accounts": ACCOUNTS,
        "rate_per_s": 1000,
        "burst": 1000,
    }
    config = make_config(folder, adapters={"kubernetes": kube})
    signer = GrantSigner(b"s" * 32)
    tools = build_registry(config, signer=signer, clock=clock)
    return await make_control(db_url, config, clock, tools=tools, signer=signer)


async def outbox(cp: ControlPlane, kind: str) -> list[dict[str, Any]]:
    rows = await cp.db.run(
        lambda s: list(s.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)))
    )
    return [dict(r.payload) for r in rows]


async def audits(cp: ControlPlane, event: str) -> list[AuditEvent]:
    return await cp.db.run(
        lambda s: list(s.exec(select(AuditEvent).where(AuditEvent.event == event)))
    )


async def every_stored_text(cp: ControlPlane) -> str:
    """Every row of every table, as text: what a leaked token would have to hide in."""

    def dump(session: Any) -> str:
        parts = []
        for table in SQLModel.metadata.sorted_tables:
            for row in session.execute(text(f'SELECT * FROM "{table.name}"')):
                parts.append(json.dumps([str(v) for v in row]))
        return "\n".join(parts)

    return await cp.db.run(dump)


async def test_canary_first_then_dry_run_on_the_card_then_the_restart_with_its_own_token(
    db_url: str, tmp_path: Path, clock: FakeClock, api: KubeApiStandIn, planes: list[ControlPlane]
) -> None:
    """A high-risk restart with a canary: the canary runs alone, the card shows the dry run,
    and the approved restart is made by a token minted for that step only."""
    cp = await kube_control(db_url, tmp_path, clock, api, CANARY_RUNBOOK.format(canary="web"))
    planes.append(cp)
    opened = await cp.open_incident(text="web is down", requester=REQUESTER)
    restarter = service_account_user(SA_NS, "restarter")
    canary = [r for r in api.requests if r.namespace == "shop-canary" and r.verb == "patch"]
    assert [(r.dry_run, r.user, r.status) for r in canary] == [
        (True, restarter, 200),
        (False, restarter, 200),
    ]
    # The real step only had its dry run so far, and it waits for two approvals.
    shop = [r for r in api.requests if r.namespace == "shop" and r.verb == "patch"]
    assert [r.dry_run for r in shop] == [True]
    (card,) = await outbox(cp, "approval_requested")
    assert card["preview"]["ok"] is True
    assert card["preview"]["summary"] == (
        "would restart deployment shop/web: its 3 pod(s) are replaced one by one"
    )
    assert card["quorum"] == 2
    nonce = await pending_nonce(cp)
    await cp.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    await cp.vote(nonce=nonce, voter=APPROVER_B, choice=VoteChoice.APPROVE)
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "succeeded", view.status_reason
    shop = [r for r in api.requests if r.namespace == "shop" and r.verb == "patch"]
    assert [r.dry_run for r in shop] == [True, True, False]
    # Three tokens minted (canary call, dry run for the card, the approved call), one per use.
    tokens = [r.token for r in (*canary[:1], shop[0], shop[2])]
    assert len(set(tokens)) == 3
    assert shop[1].token == shop[2].token  # the approved call's own dry run and call
    assert not {READ_TOKEN, MINT_TOKEN} & set(tokens)
    minted = await audits(cp, "credential_minted")
    assert [m.detail["purpose"] for m in minted] == ["call", "dry_run", "call"]
    assert all(m.detail["service_account"] == "opsgate/restarter" for m in minted)
    assert all(m.step_id for m in minted)
    assert all(m.role == "executor" for m in minted)
    assert minted[0].step_id != minted[2].step_id  # the canary is a step of its own
    stored = await every_stored_text(cp)
    for token in tokens:
        assert token is not None
        assert token not in stored


async def test_a_failing_canary_halts_the_step_before_any_approval(
    db_url: str, tmp_path: Path, clock: FakeClock, api: KubeApiStandIn, planes: list[ControlPlane]
) -> None:
    cp = await kube_control(db_url, tmp_path, clock, api, CANARY_RUNBOOK.format(canary="ghost"))
    planes.append(cp)
    opened = await cp.open_incident(text="web is down", requester=REQUESTER)
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "halted"
    assert "canary 'Canary: Restart web' failed" in view.status_reason
    assert "'Restart web' was not offered for approval" in view.status_reason
    assert await audits(cp, "approval_requested") == []
    assert await outbox(cp, "approval_requested") == []
    assert not [r for r in api.requests if r.namespace == "shop" and r.verb == "patch"]
    (finished,) = await outbox(cp, "plan_finished")
    assert "was not offered for approval" in finished["reason"]


async def test_scale_compensation_restores_the_recorded_count(
    db_url: str, tmp_path: Path, clock: FakeClock, api: KubeApiStandIn, planes: list[ControlPlane]
) -> None:
    """The verify step fails: the undo scales back to the 3 replicas the scale read before."""
    cp = await kube_control(db_url, tmp_path, clock, api, SCALE_RUNBOOK)
    planes.append(cp)
    opened = await cp.open_incident(text="web is overloaded", requester=REQUESTER)
    (card,) = await outbox(cp, "approval_requested")
    assert card["preview"]["summary"] == "would set replicas of deployment shop/web 3→1"
    assert card["compensate"]["derived"] is True
    await cp.vote(nonce=await pending_nonce(cp), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert api.deployment("shop", "web")["spec"]["replicas"] == 1
    cards = await outbox(cp, "approval_requested")
    undo = cards[-1]
    assert undo["title"] == "Undo Scale web to 1"
    assert undo["args"] == {"namespace": "shop", "name": "web", "replicas": 3}
    assert undo["preview"]["summary"] == "would set replicas of deployment shop/web 1→3"
    await cp.vote(
        nonce=await pending_nonce(cp, besides=card["nonce"]),
        voter=APPROVER_A,
        choice=VoteChoice.APPROVE,
    )
    assert api.deployment("shop", "web")["spec"]["replicas"] == 3
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "failed"
    assert [s.status for s in view.steps] == ["compensated", "failed", "succeeded"]


async def test_status_shows_the_token_a_running_kubernetes_step_holds(
    db_url: str, tmp_path: Path, clock: FakeClock, api: KubeApiStandIn, planes: list[ControlPlane]
) -> None:
    """While the approved scale is in flight, /incident status names the service account of
    the token minted for it and the token's expiry, never the token; once done, nothing."""
    cp = await kube_control(db_url, tmp_path, clock, api, SCALE_RUNBOOK)
    planes.append(cp)
    opened = await cp.open_incident(text="web is overloaded", requester=REQUESTER)
    api.hold = asyncio.Event()
    vote = asyncio.create_task(
        cp.vote(nonce=await pending_nonce(cp), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    )
    await asyncio.wait_for(api.holding.wait(), timeout=60)
    view = await cp.plan_view(opened.plan_id)
    scale = view.steps[0]
    assert scale.status == "running"
    assert scale.scope is not None
    assert scale.scope.tool_action == "kubernetes.scale"
    # The dry run for the card minted a token too, under its own grant: not this one.
    (token,) = scale.scope.tokens
    assert token.service_account == "opsgate/scaler"
    # The call's own dry run went first with the same token; the real patch waits.
    held = [r for r in api.requests if r.verb == "patch" and r.dry_run][-1].token
    assert held is not None
    assert datetime.fromisoformat(token.expires_at) == api.token_expiry(held)
    assert datetime.fromisoformat(token.expires_at) == clock.now() + timedelta(seconds=600)
    assert held not in view.model_dump_json()
    assert held not in await every_stored_text(cp)
    api.hold.set()
    await asyncio.wait_for(vote, timeout=60)
    done = await cp.plan_view(opened.plan_id)
    assert done.steps[0].status == "succeeded"  # its undo waits for approval
    assert all(step.scope is None for step in done.steps)
    # Recorded once while the call ran, not again when it ended.
    minted = await audits(cp, "credential_minted")
    calls = [m for m in minted if m.step_id == scale.id and m.detail["purpose"] == "call"]
    assert len(calls) == 1
    assert calls[0].detail["grant_id"] == scale.scope.grant_id
    assert "audited" not in calls[0].detail


async def test_a_token_that_expires_before_its_call_arrives_is_refused_and_the_step_fails(
    db_url: str, tmp_path: Path, clock: FakeClock, api: KubeApiStandIn, planes: list[ControlPlane]
) -> None:
    """The step's minted token expires while its write is in transit: the API server answers
    401, nothing changes, and the step fails with a plain message naming why."""
    cp = await kube_control(db_url, tmp_path, clock, api, SCALE_RUNBOOK)
    planes.append(cp)
    opened = await cp.open_incident(text="web is overloaded", requester=REQUESTER)
    api.hold = asyncio.Event()
    vote = asyncio.create_task(
        cp.vote(nonce=await pending_nonce(cp), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    )
    await asyncio.wait_for(api.holding.wait(), timeout=60)
    token = [r for r in api.requests if r.verb == "patch" and r.dry_run][-1].token
    assert token is not None
    expiry = api.token_expiry(token)
    assert expiry is not None
    clock.advance((expiry - clock.now()).total_seconds() + 1)
    api.hold.set()
    await asyncio.wait_for(vote, timeout=60)
    refused = [r for r in api.requests if r.verb == "patch" and not r.dry_run]
    assert [(r.status, r.user) for r in refused] == [(401, None)]
    assert api.deployment("shop", "web")["spec"]["replicas"] == 3
    view = await cp.plan_view(opened.plan_id)
    scale = view.steps[0]
    assert scale.status == "failed"
    assert scale.attempts == 1  # a 401 is not retried with the same token
    assert scale.error == (
        "scaling deployment shop/web: the API server answered 401 Unauthorized: Unauthorized "
        "(the API server did not accept the step's token, which expired, was revoked or names "
        "another audience; this request changed nothing)"
    )
    assert view.status == "failed"
    assert token not in await every_stored_text(cp)
