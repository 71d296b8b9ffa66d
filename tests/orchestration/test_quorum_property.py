"""Property: whatever the order of clicks, a step runs iff its quorum of distinct eligible
approvals comes before any eligible rejection, and it runs at most once. Approving takes a
configured approver (not the requester, for high risk); rejecting takes an approver or the
requester, whether or not the requester is a configured approver."""

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.testing import FakeTool
from common import FakeClock
from orchestration.enums import VoteChoice
from tests.orchestration.fakeplans import control_with, pending_nonce

REQUESTER = "UREQ"
APPROVERS = ["UA", "UB", "UC"]
PEOPLE = [REQUESTER, *APPROVERS, "USTRANGER"]

clicks = st.lists(
    st.tuples(st.sampled_from(PEOPLE), st.sampled_from([VoteChoice.APPROVE, VoteChoice.REJECT])),
    max_size=8,
)


def expected(
    sequence: list[tuple[str, VoteChoice]],
    *,
    quorum: int,
    exclude: bool,
    approvers: frozenset[str],
) -> str:
    """The model: 'ran', 'rejected' or 'waiting'."""
    approvals: set[str] = set()
    voted: set[str] = set()
    for voter, choice in sequence:
        if voter in voted:
            continue
        if choice is VoteChoice.REJECT:
            if voter in approvers or voter == REQUESTER:  # a veto needs no quorum
                return "rejected"
            continue
        if voter not in approvers or (exclude and voter == REQUESTER):
            continue
        voted.add(voter)
        approvals.add(voter)
        if len(approvals) >= quorum:
            return "ran"
    return "waiting"


async def play(
    sequence: list[tuple[str, VoteChoice]], risk: str, approvers: frozenset[str]
) -> tuple[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fake = FakeTool()
        cp = await control_with(
            f"sqlite:///{folder / 'q.db'}",
            folder,
            FakeClock(),
            fake,
            {"tool": "fake.nuke" if risk == "high" else "fake.write", "risk": risk},
            approvers=sorted(approvers),
        )
        try:
            opened = await cp.open_incident(text="fakefix", requester=REQUESTER)
            nonce = await pending_nonce(cp)
            for voter, choice in sequence:
                await cp.vote(nonce=nonce, voter=voter, choice=choice)
            view = await cp.plan_view(opened.plan_id)
        finally:
            await cp.close()
    status = view.steps[0].status
    outcome = {"succeeded": "ran", "rejected": "rejected"}.get(status, "waiting")
    return outcome, len(fake.calls)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sequence=clicks,
    risk=st.sampled_from(["medium", "high"]),
    requester_approves=st.booleans(),
)
def test_step_runs_iff_quorum_of_distinct_eligible_approvals_precedes_a_rejection(
    sequence: list[tuple[str, VoteChoice]], risk: str, requester_approves: bool
) -> None:
    quorum, exclude = (2, True) if risk == "high" else (1, False)
    approvers = frozenset(APPROVERS) | ({REQUESTER} if requester_approves else set())
    outcome, calls = asyncio.run(play(sequence, risk, approvers))
    assert outcome == expected(sequence, quorum=quorum, exclude=exclude, approvers=approvers)
    assert calls == (1 if outcome == "ran" else 0)
