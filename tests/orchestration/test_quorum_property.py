"""Property: whatever the order of clicks, a step runs iff its quorum of distinct eligible
approvals comes before any eligible rejection, and it runs at most once."""

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


def expected(sequence: list[tuple[str, VoteChoice]], *, quorum: int, exclude: bool) -> str:
    """The model: 'ran', 'rejected' or 'waiting'."""
    approvals: set[str] = set()
    voted: set[str] = set()
    for voter, choice in sequence:
        eligible = voter in (REQUESTER, *APPROVERS) and not (exclude and voter == REQUESTER)
        if not eligible or voter in voted:
            continue
        voted.add(voter)
        if choice is VoteChoice.REJECT:
            return "rejected"
        approvals.add(voter)
        if len(approvals) >= quorum:
            return "ran"
    return "waiting"


async def play(sequence: list[tuple[str, VoteChoice]], risk: str) -> tuple[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        fake = FakeTool()
        cp = await control_with(
            f"sqlite:///{folder / 'q.db'}",
            folder,
            FakeClock(),
            fake,
            {"tool": "fake.nuke" if risk == "high" else "fake.write", "risk": risk},
            approvers=[REQUESTER, *APPROVERS],
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
@given(sequence=clicks, risk=st.sampled_from(["medium", "high"]))
def test_step_runs_iff_quorum_of_distinct_eligible_approvals_precedes_a_rejection(
    sequence: list[tuple[str, VoteChoice]], risk: str
) -> None:
    quorum, exclude = (2, True) if risk == "high" else (1, False)
    outcome, calls = asyncio.run(play(sequence, risk))
    assert outcome == expected(sequence, quorum=quorum, exclude=exclude)
    assert calls == (1 if outcome == "ran" else 0)
