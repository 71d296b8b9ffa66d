"""A step whose credential its role lacks: refused with credential_missing before anything is
sent, a scope card asks humans, approval adds it to this plan only and the step runs again;
every credential issued or used is audited (never a value); status shows a running step's
scope."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlmodel import select

from common import FakeClock
from common.redaction import forget_secrets
from orchestration.control import ControlPlane
from orchestration.enums import ApprovalPurpose, VoteChoice
from orchestration.models import Approval
from tests.orchestration.helpers import (
    APPROVER_A,
    REQUESTER,
    make_config,
    make_control,
    serve_locally,
)

WRITE_TOKEN = "billing-write-0123456789"
READ_TOKEN = "billing-read-9876543210"

RUNBOOK = """
id: refund
version: 1
title: Refund a stuck payment
match:
  keywords: ["stuck"]
steps:
  - id: look
    title: Look at the payment
    tool: http.get
    args: {{url: "http://127.0.0.1:{port}/payment"}}
    risk: low
  - id: refund
    title: Refund the payment
    tool: http.post
    args: {{url: "http://127.0.0.1:{port}/refund", json: {{amount: 5}}}}
    risk: medium
"""


@dataclass
class Billing:
    """Needs the read token to look and the write token to refund; may hold a refund."""

    seen: list[tuple[str, str | None]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def payment(self, request: web.Request) -> web.Response:
        self.seen.append(("GET", request.headers.get("X-Api-Key")))
        if request.headers.get("X-Api-Key") != READ_TOKEN:
            return web.json_response({"error": "unauthorised"}, status=401)
        return web.json_response({"state": "stuck"})

    async def refund(self, request: web.Request) -> web.Response:
        self.seen.append(("POST", request.headers.get("Authorization")))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if request.headers.get("Authorization") != f"Bearer {WRITE_TOKEN}":
            return web.json_response({"error": "unauthorised"}, status=401)
        return web.json_response({"refunded": True})


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OPSGATE_SECRET_BILLING_WRITE", WRITE_TOKEN)
    monkeypatch.setenv("OPSGATE_SECRET_BILLING_READ", READ_TOKEN)
    yield
    forget_secrets()


@pytest.fixture
async def billing() -> AsyncIterator[tuple[Billing, int]]:
    service = Billing()
    app = web.Application()
    app.router.add_get("/payment", service.payment)
    app.router.add_post("/refund", service.refund)
    runner, port = await serve_locally(app)
    yield service, port
    await runner.cleanup()


def _credentials(write_holders: list[str] | None) -> dict[str, Any]:
    write: dict[str, Any] = {
        "hosts": ["127.0.0.1"],
        "actions": ["post"],
        "headers": {"Authorization": "Bearer ${secret:BILLING_WRITE}"},
    }
    if write_holders is not None:
        write["holders"] = write_holders
    return {
        "billing-read": {
            "hosts": ["127.0.0.1"],
            "actions": ["get"],
            "headers": {"X-Api-Key": "${secret:BILLING_READ}"},
        },
        "billing-write": write,
    }


async def _control(
    db_url: str, tmp_path: Path, clock: FakeClock, port: int, write_holders: list[str] | None
) -> ControlPlane:
    folder = tmp_path / "rb"
    folder.mkdir(exist_ok=True)
    (folder / "refund.yaml").write_text(RUNBOOK.format(port=port), encoding="utf-8")
    http = {"rate_per_s": 10000, "burst": 10000, "credentials": _credentials(write_holders)}
    config = make_config(folder, adapters={"http": http})
    return await make_control(db_url, config, clock)


async def _nonces(cp: ControlPlane, purpose: ApprovalPurpose) -> list[str]:
    return await cp.db.run(
        lambda s: list(s.exec(select(Approval.nonce).where(Approval.purpose == purpose.value)))
    )


async def test_missing_credential_asks_for_scope_and_the_approved_step_runs_again(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    billing: tuple[Billing, int],
    planes: list[ControlPlane],
) -> None:
    service, port = billing
    cp = await _control(db_url, tmp_path, clock, port, write_holders=[])  # break-glass
    planes.append(cp)
    opened = await cp.open_incident(text="payment stuck", requester=REQUESTER, channel="C1")
    (step_nonce,) = await _nonces(cp, ApprovalPurpose.STEP)
    voted = await cp.vote(nonce=step_nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert voted.accepted

    view = await cp.plan_view(opened.plan_id)
    look, refund = view.steps
    assert look.status == "succeeded"  # the Executor holds the read-only credential
    assert refund.status == "awaiting_approval"
    assert refund.error_code == "credential_missing"
    assert refund.error is not None
    assert "'http:billing-write'" in refund.error
    assert "nothing was sent" in refund.error
    assert view.status == "waiting"
    assert service.seen == [("GET", READ_TOKEN)]  # the refund was never sent

    (scope_nonce,) = await _nonces(cp, ApprovalPurpose.SCOPE)
    own = await cp.vote(nonce=scope_nonce, voter=REQUESTER, choice=VoteChoice.APPROVE)
    assert own.accepted  # medium risk: the requester may approve, as for the step itself
    view = await cp.plan_view(opened.plan_id)
    assert [s.status for s in view.steps] == ["succeeded", "succeeded"]
    assert view.status == "succeeded"
    assert service.seen == [("GET", READ_TOKEN), ("POST", f"Bearer {WRITE_TOKEN}")]

    trail = await cp.audit_trail(opened.plan_id)
    events = [e.event for e in trail]
    assert events.count("credential_issued") == 2  # look (read), refund after the extension
    assert "scope_extended" in events
    issued = [e.detail for e in trail if e.event == "credential_issued"]
    assert [d["authority"] for d in issued] == ["http:billing-read", "http:billing-write"]
    assert all(d["expires_at"] for d in issued)
    used = [
        (e.step_id, e.detail["secret"], e.detail["source"])
        for e in trail
        if e.event == "credential_used"
    ]
    assert used == [
        (look.id, "${secret:BILLING_READ}", "env"),
        (refund.id, "${secret:BILLING_WRITE}", "env"),
    ]
    requested = [e for e in trail if e.event == "approval_requested"]
    assert [e.detail["purpose"] for e in requested] == ["step", "scope"]
    text = json.dumps([e.model_dump(mode="json") for e in trail])
    assert WRITE_TOKEN not in text
    assert READ_TOKEN not in text


async def test_a_rejected_scope_card_halts_the_plan_and_nothing_is_sent(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    billing: tuple[Billing, int],
    planes: list[ControlPlane],
) -> None:
    service, port = billing
    cp = await _control(db_url, tmp_path, clock, port, write_holders=[])
    planes.append(cp)
    opened = await cp.open_incident(text="payment stuck", requester=REQUESTER, channel="C1")
    (step_nonce,) = await _nonces(cp, ApprovalPurpose.STEP)
    await cp.vote(nonce=step_nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    (scope_nonce,) = await _nonces(cp, ApprovalPurpose.SCOPE)
    await cp.vote(nonce=scope_nonce, voter=APPROVER_A, choice=VoteChoice.REJECT)
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "halted"
    assert view.steps[1].status == "rejected"
    assert [m for m, _ in service.seen] == ["GET"]


async def test_a_running_step_shows_the_scope_it_holds(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    billing: tuple[Billing, int],
    planes: list[ControlPlane],
) -> None:
    service, port = billing
    service.gate = asyncio.Event()
    cp = await _control(db_url, tmp_path, clock, port, write_holders=None)  # Executor holds it
    planes.append(cp)
    opened = await cp.open_incident(text="payment stuck", requester=REQUESTER, channel="C1")
    (step_nonce,) = await _nonces(cp, ApprovalPurpose.STEP)
    vote = asyncio.create_task(
        cp.vote(nonce=step_nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    )
    await asyncio.wait_for(service.entered.wait(), timeout=60)
    view = await cp.plan_view(opened.plan_id)
    refund = view.steps[1]
    assert refund.status == "running"
    assert refund.scope is not None
    assert refund.scope.tool_action == "http.post"
    assert refund.scope.credentials == ("http:billing-write",)
    assert refund.scope.expires_at > clock.now()
    assert view.steps[0].scope is None  # a finished step holds nothing
    service.gate.set()
    await asyncio.wait_for(vote, timeout=60)
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "succeeded"
    assert view.steps[1].scope is None
