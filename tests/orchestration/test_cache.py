"""Cache for repeated reads: TTL per tool, hits and misses counted, writes invalidate."""

from pathlib import Path

from sqlmodel import select

from adapters.testing import FakeTool
from common import FakeClock
from orchestration.config import ToolLimits
from orchestration.control import ControlPlane
from orchestration.models import CacheCounter
from tests.orchestration.fakeplans import control_with, result
from tests.orchestration.helpers import APPROVER_A, REQUESTER


async def counters(cp: ControlPlane) -> dict[str, tuple[int, int]]:
    rows = await cp.db.run(lambda s: list(s.exec(select(CacheCounter))))
    return {r.tool_action: (r.hits, r.misses) for r in rows}


async def test_repeated_reads_within_the_ttl_hit_the_cache(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    fake._queue.extend([result(True, cost=0.01, status=200)])
    cp = await control_with(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read"},
        {"tool": "fake.read"},
        cache_ttl={"fake": 30},
    )
    planes.append(cp)
    opened = await cp.open_incident(text="fakefix", requester=REQUESTER)
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "succeeded"
    assert len(fake.calls) == 1  # the second identical read came from the cache
    assert view.steps[1].cost_usd == 0
    assert await counters(cp) == {"fake.read": (1, 1)}

    clock.advance(31)  # past the TTL
    await cp.open_incident(text="fakefix", requester=REQUESTER)
    assert len(fake.calls) == 2
    assert await counters(cp) == {"fake.read": (2, 2)}


async def test_a_write_clears_the_tools_cached_reads(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    cp = await control_with(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read"},
        {"tool": "fake.write", "risk": "medium"},
        {"tool": "fake.read"},
        cache_ttl={"fake": 300},
        approvers=[REQUESTER, APPROVER_A],
    )
    planes.append(cp)
    opened = await cp.open_incident(text="fakefix", requester=REQUESTER)
    from orchestration.enums import VoteChoice  # noqa: PLC0415
    from tests.orchestration.fakeplans import pending_nonce  # noqa: PLC0415

    await cp.vote(nonce=await pending_nonce(cp), voter=APPROVER_A, choice=VoteChoice.APPROVE)
    view = await cp.plan_view(opened.plan_id)
    assert view.status == "succeeded"
    assert [c.action for c in fake.calls] == ["read", "write", "read"]  # the re-read is live


async def test_tools_without_a_ttl_are_never_cached(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    cp = await control_with(
        db_url, tmp_path, clock, fake, {"tool": "fake.read"}, {"tool": "fake.read"}
    )
    planes.append(cp)
    await cp.open_incident(text="fakefix", requester=REQUESTER)
    assert len(fake.calls) == 2
    assert await counters(cp) == {}
    assert ToolLimits().cache_ttl_s == 0
