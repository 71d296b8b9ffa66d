"""Run a recording again in a sandbox and compare the two runs step by step.

The sandbox is a SQLite file in a temporary folder, deleted afterwards: the recorded incident,
plan (reset to proposed) and runbook steps (reset to pending) are copied there with the
knowledge versions the plan pinned (so it is fresh there, whatever today's files say) and the
playbooks stored when it was proposed. Time is virtual (a fake clock that retries' backoff
moves), so a replay takes as long as its units of work. Approvals are answered by casting the
recorded votes again, in order, on the sandbox's matching approval (same purpose and step);
one the original never decided leaves the replay waiting there, as the original did.

Config that is not knowledge (approvers, retries, budgets' channel cap) is today's.
"""

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlmodel import Session, col, select

from adapters import GrantSigner, ToolRegistry
from adapters.testing import FakeSleep
from common import FakeClock
from orchestration import intake, planner
from orchestration.agents.catalogue import ActionCatalogue
from orchestration.agents.planning import ANSWER_KIND, LLM_RUNBOOK_ID, AnswerInvalid, parse_answer
from orchestration.config import OpsgateConfig
from orchestration.control import ControlPlane
from orchestration.db import Database
from orchestration.enums import ApprovalState, IncidentStatus, PlanStatus, VoteChoice
from orchestration.enums import StepStatus as S
from orchestration.errors import OrchestrationError
from orchestration.knowledge import KnowledgeSnapshot
from orchestration.knowledge.store import pin_key
from orchestration.models import Approval, Incident, Knowledge, Plan, Step
from orchestration.replay.failat import FailAt
from orchestration.replay.recording import Recording
from orchestration.replay.summary import RunSummary, StepOutcome, summarise
from orchestration.replay.tools import Answers, ReplayTool
from orchestration.runbooks import Runbook
from orchestration.telemetry import get_logger
from policies import Pack

log = get_logger("opsgate.replay")
MAX_ROUNDS = 50  # approval rounds; a plan has far fewer approvals than this


class StepComparison(BaseModel):
    """One step in the original run beside the replay, and what differs."""

    model_config = ConfigDict(frozen=True)

    key: str
    title: str
    original: StepOutcome | None
    replay: StepOutcome | None
    differs: tuple[str, ...] = ()


class ReplayReport(BaseModel):
    """The original run beside the replay."""

    model_config = ConfigDict(frozen=True)

    plan_id: str
    incident_id: str
    runbook: str
    plan_version: int
    knowledge_pins: dict[str, int]
    plan_hash: str
    plan_hash_reproduced: bool | None  # the pinned runbook (or LLM answer) plans it again
    fail_at: str | None
    live_readonly: bool
    original: RunSummary
    replay: RunSummary
    steps: tuple[StepComparison, ...]
    differences: tuple[str, ...]
    missing: tuple[str, ...]  # calls the recording holds no response for
    calls: tuple[str, ...]  # every call the replay answered, and how

    def as_json(self) -> dict[str, Any]:
        """The report as JSON-safe data."""
        return self.model_dump(mode="json")


def _pack_of(recording: Recording, fallback: Pack) -> Pack:
    for row in recording.knowledge:
        if pin_key(row["kind"], row["key"]) in recording.plan["knowledge_pins"] and (
            row["kind"] == "policy" and row["key"] == "pack"
        ):
            return Pack.model_validate(row["body"])
    return fallback


def _reproduced(recording: Recording, pack: Pack) -> bool | None:
    """Whether the pinned runbook plans the recorded plan hash again from the incident text."""
    pins: Mapping[str, int] = recording.plan["knowledge_pins"]
    runbooks = {}
    for row in recording.knowledge:
        if row["kind"] == "runbook" and pin_key("runbook", row["key"]) in pins:
            try:
                runbooks[row["key"]] = Runbook.model_validate(row["body"])
            except ValueError:
                return None
    if not runbooks:
        return None
    snapshot = KnowledgeSnapshot(runbooks=runbooks, versions=dict(pins), pack=pack)
    try:
        draft = planner.plan(snapshot, intake.validate(str(recording.incident["text"])))
    except OrchestrationError:
        return False
    return bool(draft.plan_hash == recording.plan["plan_hash"])


def _reproduced_llm(recording: Recording, tools: ToolRegistry) -> bool | None:
    """Whether the pinned answer of the LLM Planner validates to the recorded plan hash again
    (no model is called: the answer is knowledge, the actions are today's registry's)."""
    pins: Mapping[str, int] = recording.plan["knowledge_pins"]
    for row in recording.knowledge:
        pin = pin_key(row["kind"], row["key"])
        if row["kind"] != ANSWER_KIND or pin not in pins:
            continue
        body = row["body"]
        others = {k: v for k, v in pins.items() if k != pin}
        try:
            parsed = parse_answer(
                str(body["answer"]), ActionCatalogue(tools), model=str(body["model"]), pins=others
            )
        except (AnswerInvalid, KeyError, TypeError):
            return False
        return bool(parsed.draft.plan_hash == recording.plan["plan_hash"])
    return None


def seed(session: Session, recording: Recording) -> None:
    """Copy the recorded plan into the sandbox, as it stood when it was proposed."""
    incident = dict(recording.incident)
    incident |= {"status": IncidentStatus.OPEN.value, "resolved_at": None}
    session.add(Incident(**incident))
    plan = dict(recording.plan)
    plan |= {
        "status": PlanStatus.PROPOSED.value,
        "status_reason": "",
        "soft_acknowledged": False,
        "spent_usd": 0.0,
        "spent_tokens": 0,
        "denials": 0,
        "no_progress": 0,
        "finished_at": None,
    }
    session.add(Plan(**plan))
    for recorded in recording.steps:
        if recorded["kind"] != "runbook":
            continue  # compensations are planned again by the replay, if it fails
        step = dict(recorded)
        step |= {
            "status": S.PENDING.value,
            "decision_code": "",
            "decision_reason": "",
            "attempts": 0,
            "result": None,
            "error_code": None,
            "error": None,
            "cost_usd": 0.0,
            "tokens": 0,
            "duration_ms": 0.0,
            "started_at": None,
            "finished_at": None,
            "lease_owner": None,
            "lease_until": None,
            "observe": _unseen(recorded.get("observe")),
        }
        session.add(Step(**step))
    for row in recording.knowledge:
        session.add(Knowledge(**row))


def _unseen(observe: dict[str, Any] | None) -> dict[str, Any] | None:
    """A probe's expectation without what it saw last time."""
    if observe is None:
        return None
    return {k: v for k, v in observe.items() if k in ("healthy", "end_if")}


async def replay(
    recording: Recording,
    *,
    config: OpsgateConfig,
    tools: ToolRegistry,
    signer: GrantSigner,
    pack: Pack,
    fail_at: FailAt | None = None,
    live_readonly: bool = False,
) -> ReplayReport:
    """Replay ``recording`` in a throwaway sandbox and compare it with the original run.

    Args:
        recording: the plan as the live store kept it (:func:`load_recording`).
        config: today's config (approvers, retries); knowledge comes from the recording.
        tools: the live registry; its specs are replayed, and with ``live_readonly`` its
            read-only actions are called for real (grants signed by ``signer``).
        signer: signs the sandbox's grants (the live tools' signer, for ``live_readonly``).
        pack: the policy pack when the plan pinned none.
        fail_at: the step whose calls fail, and how.
        live_readonly: call read-only actions for real instead of answering from the recording.
    """
    if fail_at is not None:
        fail_at.check(recording.runbook_keys())
    pinned = _pack_of(recording, pack)
    with tempfile.TemporaryDirectory(prefix="opsgate-replay-") as folder:
        db = Database(f"sqlite:///{Path(folder) / 'replay.db'}")
        clock = FakeClock(start=recording.created_at)

        async def key_of(step_id: str) -> str | None:
            return await db.run(lambda s: _key(s, step_id))

        answers = Answers(
            recording=recording, key_of=key_of, fail_at=fail_at, live_readonly=live_readonly
        )
        registry = ToolRegistry(
            ReplayTool(spec, answers=answers, signer=signer, clock=clock, live=tools.get(spec.name))
            for spec in tools.specs()
        )
        sandbox = ControlPlane(
            db=db,
            config=config,
            tools=registry,
            pack=pinned,
            signer=signer,
            clock=clock,
            sleep=FakeSleep(clock),
            export_spans=False,  # a replay's spans are not the live system's
        )
        try:
            await db.start()
            await db.run(lambda s: seed(s, recording))
            await sandbox.advance(recording.plan_id)
            await _cast_recorded_votes(sandbox, recording)
            after = await db.run(lambda s: summarise(s, recording.plan_id))
        finally:
            await sandbox.close()
    reproduced = (
        _reproduced_llm(recording, tools)
        if recording.plan["runbook_id"] == LLM_RUNBOOK_ID
        else _reproduced(recording, pinned)
    )
    return _report(recording, reproduced, fail_at, live_readonly, answers, after)


def _key(session: Session, step_id: str) -> str | None:
    step = session.get(Step, step_id)
    return None if step is None else step.key


async def _cast_recorded_votes(sandbox: ControlPlane, recording: Recording) -> None:
    """Answer each sandbox approval with the votes cast on its recorded counterpart."""
    used: set[str] = set()
    for _ in range(MAX_ROUNDS):
        pending = await sandbox.db.run(lambda s: _pending(s, recording.plan_id))
        progressed = False
        for nonce, purpose, key in pending:
            original = next(
                (
                    a
                    for a in recording.approvals
                    if a["id"] not in used
                    and a["purpose"] == purpose
                    and recording.key_of(a["step_id"]) == key
                    and a["votes"]
                ),
                None,
            )
            if original is None:
                continue
            used.add(original["id"])
            progressed = True
            for vote in original["votes"]:
                outcome = await sandbox.vote(
                    nonce=nonce,
                    voter=vote["voter"],
                    choice=VoteChoice(vote["choice"]),
                    reason=vote["reason"],
                )
                log.debug("replay_vote_cast", voter=vote["voter"], outcome=str(outcome))
        if not progressed:
            return


def _pending(session: Session, plan_id: str) -> list[tuple[str, str, str | None]]:
    found = []
    for approval in session.exec(
        select(Approval)
        .where(Approval.plan_id == plan_id, Approval.state == ApprovalState.PENDING.value)
        .order_by(col(Approval.created_at))
    ):
        step = session.get(Step, approval.step_id) if approval.step_id else None
        found.append((approval.nonce, approval.purpose, step.key if step else None))
    return found


def _report(  # noqa: PLR0917 - private: the parts of one report
    recording: Recording,
    reproduced: bool | None,
    fail_at: FailAt | None,
    live_readonly: bool,
    answers: Answers,
    after: RunSummary,
) -> ReplayReport:
    before = recording.summary
    keys = [s.key for s in before.steps] + [
        s.key for s in after.steps if before.step(s.key) is None
    ]
    steps = []
    for key in keys:
        old, new = before.step(key), after.step(key)
        either = old or new
        steps.append(
            StepComparison(
                key=key,
                title=either.title if either is not None else key,
                original=old,
                replay=new,
                differs=tuple(_step_differences(old, new)),
            )
        )
    return ReplayReport(
        plan_id=recording.plan_id,
        incident_id=str(recording.incident["id"]),
        runbook=f"{recording.plan['runbook_id']} v{recording.plan['runbook_version']}",
        plan_version=int(recording.plan["version"]),
        knowledge_pins=dict(recording.plan["knowledge_pins"]),
        plan_hash=str(recording.plan["plan_hash"]),
        plan_hash_reproduced=reproduced,
        fail_at=str(fail_at) if fail_at else None,
        live_readonly=live_readonly,
        original=before,
        replay=after,
        steps=tuple(steps),
        differences=tuple(_run_differences(before, after, steps)),
        missing=tuple(answers.missing),
        calls=tuple(answers.answered),
    )


def _step_differences(old: StepOutcome | None, new: StepOutcome | None) -> list[str]:
    if old is None:
        return ["only in the replay"]
    if new is None:
        return ["only in the original"]
    out = []
    if old.status != new.status:
        out.append(f"status {old.status} -> {new.status}")
    if old.attempts != new.attempts:
        out.append(f"attempts {old.attempts} -> {new.attempts}")
    if old.error_code != new.error_code:
        out.append(f"error {old.error_code or '-'} -> {new.error_code or '-'}")
    if abs(old.cost_usd - new.cost_usd) > 1e-9:
        out.append(f"cost ${old.cost_usd:.4f} -> ${new.cost_usd:.4f}")
    return out


def _run_differences(
    before: RunSummary, after: RunSummary, steps: list[StepComparison]
) -> list[str]:
    out = []
    if before.status != after.status:
        out.append(f"plan {before.status} -> {after.status}")
    retries = [
        f"{c.key} ({c.original.attempts if c.original else 0} -> {c.replay.attempts})"
        for c in steps
        if c.replay is not None
        and c.replay.attempts > (c.original.attempts if c.original else 0)
        and c.replay.attempts > 1
    ]
    if retries:
        out.append(f"more attempts: {', '.join(retries)}")
    if before.compensation != after.compensation:
        out.append(
            f"compensation: {', '.join(before.compensation) or 'none'} -> "
            f"{', '.join(after.compensation) or 'none'}"
        )
    elif after.compensation:
        out.append(f"compensation as before: {', '.join(after.compensation)}")
    if before.escalated != after.escalated:
        out.append(
            "escalated to humans in the replay: " + after.escalation
            if after.escalated
            else "the original escalated; the replay does not"
        )
    if abs(before.spent_usd - after.spent_usd) > 1e-9:
        out.append(f"budget spent ${before.spent_usd:.4f} -> ${after.spent_usd:.4f}")
    if before.playbooks != after.playbooks:
        out.append(
            f"recovery playbooks: {', '.join(before.playbooks) or 'none'} -> "
            f"{', '.join(after.playbooks) or 'none'}"
        )
    return out
