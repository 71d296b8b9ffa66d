"""``kill -9`` at every step boundary of the demo runbook, on SQLite and PostgreSQL.

Each scenario drives real ``opsgate serve`` processes as people would (signed slash commands
and clicks through the fake Slack), kills the process at one named boundary, starts a fresh
one on the same database, and finishes the incident. The target counts what really happened:
no approval is lost, no non-idempotent step runs twice, and every step whose fate is unknown
is surfaced as in doubt and settled by humans.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.ids import ActionId
from bot.sandbox.webapi import FakeSlack
from tests.faults.harness import (
    APPROVER_A,
    APPROVER_B,
    FLUSH_RUNBOOK,
    LEASE_S,
    REQUESTER,
    RUNBOOK,
    Replica,
    Target,
    card,
    click,
    command,
    roots,
    texts,
    wait_for,
)

pytestmark = pytest.mark.faults


@dataclass
class World:
    tmp: Path
    slack: FakeSlack
    target: Target
    db_url: str
    replicas: list[Replica] = field(default_factory=list)

    @property
    def current(self) -> Replica:
        return self.replicas[-1]

    async def boot(self, kill_at: str = "") -> Replica:
        replica = Replica(
            self.tmp,
            api_url=self.slack.base_url,
            db_url=self.db_url,
            name=f"replica{len(self.replicas)}",
            kill_at=kill_at,
        )
        self.replicas.append(replica)
        return await replica.start()

    async def until(self, predicate: object, *, what: str, timeout_s: float = 40.0) -> None:
        """Wait for ``predicate``; a replica that died meanwhile is replaced, as an operator
        (or the orchestrator) would restart it."""

        def check() -> bool:
            if self.current.dead:
                raise _Died
            return bool(predicate())  # type: ignore[operator]

        for _ in range(3):
            try:
                await wait_for(check, timeout_s=timeout_s, what=what)
                return
            except _Died:
                await self.boot()
        raise AssertionError(f"replicas kept dying while waiting for {what}")

    async def send(self, body: str) -> None:
        """Post to the current replica; if it dies answering, the next one is started."""
        status = await self.current.post(body)
        if status is None:  # no answer: the process is dying at a fault point
            await wait_for(lambda: self.current.dead, timeout_s=10, what="the process to die")
            await self.boot()
        else:
            assert status == 200, status


class _Died(Exception):
    pass


@pytest.fixture
async def world(tmp_path: Path, db_url: str) -> AsyncIterator[World]:
    target = await Target(restart_delay_s=0.5, rollback_delay_s=0.5).start()
    slack = FakeSlack()
    await slack.start()
    for user in (REQUESTER, APPROVER_A, APPROVER_B):
        slack.add_user(user, name=user.lower())
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "web-restart.yaml").write_text(RUNBOOK.format(port=target.port))
    (folder / "cache-flush.yaml").write_text(FLUSH_RUNBOOK.format(port=target.port))
    (tmp_path / "opsgate.yaml").write_text(
        f"runbooks: ./runbooks\napprovers: [{REQUESTER}, {APPROVER_A}, {APPROVER_B}]\n"
        "slack: {channel_rate_per_s: 100}\n"
        f"execution: {{lease_s: {LEASE_S}, reconcile_s: 0.5, max_attempts: 2, "
        "backoff_initial_s: 0.05, backoff_max_s: 0.1}\n"
    )
    made = World(tmp=tmp_path, slack=slack, target=target, db_url=db_url)
    yield made
    for replica in made.replicas:
        replica.stop()
    await slack.stop()
    await target.stop()


async def approve(world: World, title: str, *voters: str) -> None:
    for voter in voters:
        await world.until(lambda: card(world.slack, title), what=f"the card of {title}")
        message = card(world.slack, title)
        assert message is not None
        before = str(message.blocks)
        await world.send(click(message, voter, ActionId.APPROVE))
        await world.until(
            lambda m=message, b=before: (
                card(world.slack, title) is None or str(card(world.slack, title).blocks) != b
            ),  # type: ignore[union-attr]
            what=f"{voter}'s vote on {title} to show",
        )


async def settle_in_doubt(world: World, title: str, *, ran: bool) -> bool:
    """Answer an in-doubt card as on-call would after looking at the target; False if none."""
    message = card(world.slack, title, action=ActionId.IN_DOUBT_RAN)
    if message is None:
        return False
    answer = ActionId.IN_DOUBT_RAN if ran else ActionId.IN_DOUBT_RERUN
    for voter in (APPROVER_A, APPROVER_B):
        message = card(world.slack, title, action=answer)
        if message is None:
            break  # quorum reached with fewer answers
        await world.send(click(message, voter, answer))
    return True


RESTART_BOUNDARIES = {
    # boundary: (OPSGATE_FAULT_KILL_AT, whether the restart's fate becomes unknown)
    "after_intake": ("after_intake", False),
    "after_first_vote": ("after_vote_commit:1", False),
    "after_final_vote": ("after_vote_commit:2", True),
    "after_grant": ("after_grant:2", True),
    "during_call": ("", True),
    "after_call": ("after_call:2", True),
}


@pytest.mark.parametrize("boundary", sorted(RESTART_BOUNDARIES))
async def test_kill_at_a_boundary_of_the_restart_runbook(world: World, boundary: str) -> None:
    kill_at, unknown = RESTART_BOUNDARIES[boundary]
    target = world.target
    await world.boot(kill_at)
    await world.send(command("checkout-api is down"))
    await approve(world, "Restart checkout-api", APPROVER_A)
    if boundary == "during_call":
        await world.send(
            click(card(world.slack, "Restart checkout-api"), APPROVER_B, ActionId.APPROVE)  # type: ignore[arg-type]
        )
        await world.until(target.arrived.is_set, what="the restart call to arrive")
        world.current.kill()
        await world.boot()
    else:
        await approve(world, "Restart checkout-api", APPROVER_B)

    def finished() -> bool:
        return "Plan finished" in texts(world.slack)

    def in_doubt_card() -> bool:
        return card(world.slack, "Restart checkout-api", action=ActionId.IN_DOUBT_RAN) is not None

    await world.until(lambda: finished() or in_doubt_card(), what="the restart's fate")
    surfaced = in_doubt_card()
    if surfaced:
        assert "In doubt" in texts(world.slack)
        # The card's check says what the target shows: answer as on-call would after reading it.
        await world.until(lambda: target.calls["health"] >= 2, what="the check")
        message = card(world.slack, "Restart checkout-api", action=ActionId.IN_DOUBT_RAN)
        looks_done = "looks done" in str(message.blocks)  # type: ignore[union-attr]
        assert looks_done == (target.calls["restart"] == 1)
        assert await settle_in_doubt(world, "Restart checkout-api", ran=looks_done)
    await world.until(
        lambda: "Verify checkout-api is healthy* succeeded" in texts(world.slack),
        what="the verification",
    )
    assert surfaced == unknown, (boundary, surfaced)
    assert target.calls["restart"] == 1, target.calls  # never twice, never lost
    assert len(roots(world.slack)) == 1  # one incident, whatever was replayed
    assert len({key for verb, key in target.keys if verb == "restart"}) == 1


async def test_kill_during_compensation_leaves_it_in_doubt_never_rerun(world: World) -> None:
    target = world.target
    await world.boot()
    await world.send(command("web serves stale data"))
    await approve(world, "Flush web cache", APPROVER_A)
    await world.until(lambda: card(world.slack, "Roll web back"), what="the compensation card")
    target.arrived.clear()
    await world.send(click(card(world.slack, "Roll web back"), APPROVER_A, ActionId.APPROVE))  # type: ignore[arg-type]
    await world.until(
        lambda: target.arrived.is_set() and target.keys[-1][0] == "rollback",
        what="the rollback call to arrive",
    )
    world.current.kill()
    await world.boot()
    await world.until(
        lambda: card(world.slack, "Roll web back", action=ActionId.IN_DOUBT_RAN),
        what="the compensation to be in doubt",
    )
    await world.until(lambda: target.calls["rollback"] == 1, what="the rollback to finish")
    assert await settle_in_doubt(world, "Roll web back", ran=True)
    await world.until(lambda: "Plan finished" in texts(world.slack), what="the plan to end")
    assert target.calls["rollback"] == 1
    assert target.calls["flush"] == 1


async def test_kill_during_a_gated_call_demotes_the_scope_and_the_next_incident_asks(
    world: World,
) -> None:
    """Staged trust under a crash: a gated restart runs alone; the process is killed while the
    call is in flight; the next process finds the step in doubt, which demotes the scope to
    supervised (ops hears why), and the next incident asks for approval instead."""
    config = world.tmp / "opsgate.yaml"
    config.write_text(
        config.read_text().replace(
            "slack: {channel_rate_per_s: 100}",
            "slack: {channel_rate_per_s: 100, ops_channel: C0OPS}",
        )
        + "rollout:\n  scopes:\n"
        "    - {id: restarts, runbook: web-restart, tools: [state_changing, destructive],"
        " stage: gated, max_risk: high}\n"
    )
    target = world.target
    await world.boot()
    await world.send(command("checkout-api is down"))
    await world.until(target.arrived.is_set, what="the gated restart to run alone")
    assert card(world.slack, "Restart checkout-api") is None  # no approval was asked
    world.current.kill()
    await world.boot()
    await world.until(
        lambda: card(world.slack, "Restart checkout-api", action=ActionId.IN_DOUBT_RAN),
        what="the restart to be in doubt",
    )
    await world.until(
        lambda: "demoted from gated to supervised" in texts(world.slack, "C0OPS"),
        what="the demotion to reach the ops channel",
    )
    assert "'Restart checkout-api' in doubt" in texts(world.slack, "C0OPS")
    await world.until(lambda: target.calls["restart"] == 1, what="the restart to finish")
    assert await settle_in_doubt(world, "Restart checkout-api", ran=True)
    await world.until(lambda: "Plan finished" in texts(world.slack), what="the plan to end")
    # Supervised now: the next incident's restart waits for two approvals.
    target.healthy = False
    await world.send(command("payments-api is down"))
    await world.until(
        lambda: card(world.slack, "Restart payments-api", needle="payments-api") is not None,
        what="the approval card of the next restart",
    )
    assert target.calls["restart"] == 1  # never re-run, and the next one waits
    assert target.calls["restart:payments-api"] == 0
