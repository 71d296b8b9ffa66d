"""What a scope has shown in its stage: proposals against what humans did, and what it cost.

The formulas (pinned by ``tests/orchestration/test_rollout_evidence.py`` with hand-computed
figures):

* The window holds the incidents *opened* in ``[since, until]`` (both ends included).
* A **proposal** is a state-changing runbook step (read-only steps change nothing and are not
  judged) of such an incident, counted in the scope its step was planned under. In shadow, a
  step a shadow scope recorded as a proposal (``decision_code = shadow_mode``); in supervised
  and gated, a step that was decided (run, approved, rejected).
* An incident is **judged** once its baseline exists. With a shadow proposal, or with no
  decided proposal at all: it is closed, and its resolver answered the baseline card, or
  somebody recorded ``/incident did``, or its alert resolved with nothing recorded ("no
  action needed"). Otherwise (supervised and gated): some proposal of it was decided. Only
  judged incidents count below.
* A proposal is **taken** when the human did it: in shadow, ticked on the card or named by
  ``/incident did``; in supervised and gated, it ran (a rejection is the human saying no).
* **False positive**: a proposal not taken. ``FP rate[r] = FP[r] / proposals[r]``, where ``r``
  is the proposal's severity, the effective risk of its action (low, medium, high).
* **False negative**: a change the human made that opsgate did not propose (free text on the
  card, or ``/incident did`` naming no proposed step). An incident's severity is the highest
  severity among its proposals (low when it has none); ``FN rate[r] = FN[r] / (taken[r] +
  FN[r])`` over incidents of severity ``r``: the share of the humans' changes opsgate missed.
* **Agreement**: judged incidents with no FP and no FN (proposed nothing and nothing was
  needed counts) over judged incidents.
* **Cost per action**: over every proposal in the window (judged or not), what it cost (its
  recorded cost when it ran, else its forecast: what opsgate would have spent, in shadow or
  when a human rejected it) divided by the
  number of proposals. **Drift** is ``|cost per action of the last 7 days / of the whole
  window - 1|`` (0 while either has no proposal).
* **Failures**: state-changing steps of the scope that failed, were compensated or went in
  doubt in the window.

A rate with a zero denominator is ``None``: nothing to judge yet (a bound on it is met).
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from common import Mode, Risk
from orchestration.enums import IncidentStatus, StepKind, StepStatus
from orchestration.models import HumanAction, Incident, Plan, Step
from orchestration.rollout.scopes import DEFAULT_SCOPE, best_rule
from orchestration.rollout.settings import RolloutConfig, ToolClass

RECENT = timedelta(days=7)
SEVERITIES = (Risk.LOW, Risk.MEDIUM, Risk.HIGH)
_DECIDED = frozenset(
    {
        StepStatus.SUCCEEDED.value,
        StepStatus.FAILED.value,
        StepStatus.COMPENSATED.value,
        StepStatus.REJECTED.value,
        StepStatus.IN_DOUBT.value,
    }
)
_FAILURES = frozenset(
    {StepStatus.FAILED.value, StepStatus.COMPENSATED.value, StepStatus.IN_DOUBT.value}
)


@dataclass(frozen=True)
class Proposal:
    """One state-changing step opsgate proposed (or ran), and what the human made of it."""

    incident_id: str
    key: str
    scope: str
    stage: Mode
    risk: Risk
    cost_usd: float
    at: datetime
    taken: bool = False
    failed: bool = False


@dataclass
class Judgement:
    """One incident: its proposals, what humans did besides, and whether it is judged."""

    incident_id: str
    at: datetime
    channel: str
    runbook: str
    proposals: list[Proposal] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # changes the humans made, not proposed
    judged: bool = False

    def severity(self, scope: str) -> Risk:
        """The highest severity among the scope's proposals; low when it proposed nothing."""
        risks = [p.risk for p in self.proposals if p.scope == scope]
        return max(risks, key=lambda r: r.rank) if risks else Risk.LOW


@dataclass(frozen=True)
class Rate:
    """``count`` of ``total`` (``value`` None when there was nothing to count)."""

    count: int
    total: int

    @property
    def value(self) -> float | None:
        """``count / total``, or None for 0 of 0."""
        return self.count / self.total if self.total else None

    def words(self) -> str:
        """``"1/20 (5.0%)"`` or ``"0/0"``."""
        value = self.value
        return f"{self.count}/{self.total}" + (f" ({value:.1%})" if value is not None else "")


@dataclass(frozen=True)
class Evidence:
    """What one scope showed in one window."""

    scope: str
    since: datetime
    until: datetime
    incidents: int  # judged
    proposals: int
    fp: Mapping[Risk, Rate]
    fn: Mapping[Risk, Rate]
    agreement: Rate
    cost_per_action: float | None
    recent_cost_per_action: float | None
    failures: int

    @property
    def days(self) -> float:
        """Days in the window."""
        return (self.until - self.since).total_seconds() / 86400

    @property
    def cost_drift(self) -> float:
        """``|recent / overall - 1|`` (0 while either is unknown or zero)."""
        if not self.cost_per_action or self.recent_cost_per_action is None:
            return 0.0
        return abs(self.recent_cost_per_action / self.cost_per_action - 1)

    def fp_overall(self) -> Rate:
        """False positives over every severity."""
        return Rate(sum(r.count for r in self.fp.values()), sum(r.total for r in self.fp.values()))

    def fn_overall(self) -> Rate:
        """False negatives over every severity."""
        return Rate(sum(r.count for r in self.fn.values()), sum(r.total for r in self.fn.values()))


def change_scope(config: RolloutConfig, *, channel: str, runbook: str) -> str:
    """The scope a state-changing step of ``runbook`` in ``channel`` would be planned under."""
    rule = best_rule(config.scopes, channel=channel, runbook=runbook, cls=ToolClass.STATE_CHANGING)
    return rule.id if rule else DEFAULT_SCOPE


def judgements(session: Session, *, since: datetime, until: datetime) -> list[Judgement]:
    """Every incident opened in ``[since, until]`` with its proposals and its baseline."""
    incidents = {
        i.id: i
        for i in session.exec(
            select(Incident).where(
                col(Incident.created_at) >= since, col(Incident.created_at) <= until
            )
        )
    }
    if not incidents:
        return []
    ids = list(incidents)
    plans = list(session.exec(select(Plan).where(col(Plan.incident_id).in_(ids))))
    by_plan = {p.id: p for p in plans}
    steps = session.exec(
        select(Step).where(
            col(Step.plan_id).in_(list(by_plan)),
            Step.read_only == False,  # noqa: E712 - SQL comparison
            Step.kind == StepKind.RUNBOOK.value,
        )
    )
    actions: dict[str, list[HumanAction]] = defaultdict(list)
    for action in session.exec(select(HumanAction).where(col(HumanAction.incident_id).in_(ids))):
        actions[action.incident_id].append(action)
    found: dict[str, Judgement] = {}
    first_plan: dict[str, Plan] = {}
    for row in sorted(plans, key=lambda p: p.version):
        first_plan.setdefault(row.incident_id, row)
    for incident_id, incident in incidents.items():
        first = first_plan.get(incident_id)
        found[incident_id] = Judgement(
            incident_id=incident_id,
            at=incident.created_at,
            channel=incident.channel,
            runbook=first.runbook_id if first else "",
        )
    rows: dict[str, list[Step]] = defaultdict(list)
    for step in steps:
        rows[by_plan[step.plan_id].incident_id].append(step)
    for incident_id, judgement in found.items():
        _judge(judgement, incidents[incident_id], rows.get(incident_id, []), actions[incident_id])
    return sorted(found.values(), key=lambda j: j.at)


def _judge(
    judgement: Judgement, incident: Incident, steps: list[Step], actions: list[HumanAction]
) -> None:
    """Fill in one incident's proposals and baseline (see the module docstring)."""
    took = {a.step_key for a in actions if a.kind == "took" and a.step_key}
    judgement.other = [a.text for a in actions if a.kind == "other"]
    closed = incident.status != IncidentStatus.OPEN.value
    decided = False
    shadowed = False
    for step in steps:
        staged = step.rollout or {}
        stage = Mode(staged.get("stage") or Mode.SUPERVISED)
        risk = Risk(staged.get("risk") or step.risk)
        if stage is Mode.SHADOW or step.decision_code == "shadow_mode":
            if step.decision_code != "shadow_mode" or stage is not Mode.SHADOW:
                # Never proposed by a shadow scope: the plan ended before it, or (another
                # scope's step) it was cut off by an earlier step's shadow.
                continue
            shadowed = True
            taken, failed, cost = step.key in took, False, step.estimate_usd
        elif step.status in _DECIDED:
            decided = True
            taken = step.status != StepStatus.REJECTED.value
            failed = step.status in _FAILURES
            # what it cost, or what it would have cost when a human said no
            cost = step.estimate_usd if not taken else step.cost_usd
        else:
            continue
        judgement.proposals.append(
            Proposal(
                incident_id=incident.id,
                key=step.key,
                scope=str(staged.get("scope") or DEFAULT_SCOPE),
                stage=Mode.SHADOW if step.decision_code == "shadow_mode" else stage,
                risk=risk if risk in SEVERITIES else Risk.HIGH,
                cost_usd=cost,
                at=incident.created_at,
                taken=taken,
                failed=failed,
            )
        )
    recorded = bool(actions)
    if shadowed or not decided:
        judgement.judged = closed and recorded
    else:
        judgement.judged = decided or recorded


def evidence(
    config: RolloutConfig,
    scope: str,
    found: Sequence[Judgement],
    *,
    since: datetime,
    until: datetime,
) -> Evidence:
    """What ``scope`` showed in ``[since, until)`` (``found``: :func:`judgements`)."""
    mine = [
        j
        for j in found
        if since <= j.at <= until
        and (
            any(p.scope == scope for p in j.proposals)
            or change_scope(config, channel=j.channel, runbook=j.runbook) == scope
        )
    ]
    proposals = [p for j in mine for p in j.proposals if p.scope == scope]
    judged = [j for j in mine if j.judged]
    fp_count: dict[Risk, int] = dict.fromkeys(SEVERITIES, 0)
    fp_total: dict[Risk, int] = dict.fromkeys(SEVERITIES, 0)
    fn_count: dict[Risk, int] = dict.fromkeys(SEVERITIES, 0)
    fn_total: dict[Risk, int] = dict.fromkeys(SEVERITIES, 0)
    agreed = 0
    for j in judged:
        own = [p for p in j.proposals if p.scope == scope]
        for p in own:
            fp_total[p.risk] += 1
            fp_count[p.risk] += not p.taken
        severity = j.severity(scope)
        fn_count[severity] += len(j.other)
        fn_total[severity] += len(j.other) + sum(p.taken for p in own)
        agreed += all(p.taken for p in own) and not j.other
    recent = [p for p in proposals if p.at >= until - RECENT]
    return Evidence(
        scope=scope,
        since=since,
        until=until,
        incidents=len(judged),
        proposals=len(proposals),
        fp={r: Rate(fp_count[r], fp_total[r]) for r in SEVERITIES},
        fn={r: Rate(fn_count[r], fn_total[r]) for r in SEVERITIES},
        agreement=Rate(agreed, len(judged)),
        cost_per_action=_mean(p.cost_usd for p in proposals),
        recent_cost_per_action=_mean(p.cost_usd for p in recent),
        failures=sum(p.failed for p in proposals),
    )


def recent_fp(scope: str, found: Sequence[Judgement], *, last: int) -> Rate:
    """False positives among the scope's proposals in its last ``last`` judged incidents."""
    judged = [j for j in found if j.judged and any(p.scope == scope for p in j.proposals)]
    own = [p for j in judged[-last:] for p in j.proposals if p.scope == scope]
    return Rate(sum(not p.taken for p in own), len(own))


def _mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None
