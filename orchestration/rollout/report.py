"""``opsgate rollout status`` and ``/incident rollout``: each scope, its stage and its evidence."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from common import Mode
from orchestration.rollout.criteria import Criterion, evaluate
from orchestration.rollout.evidence import Evidence, evidence, judgements
from orchestration.rollout.scopes import DEFAULT_SCOPE
from orchestration.rollout.settings import NEXT_STAGE, RolloutConfig
from orchestration.rollout.stages import current_stages, stage_rows


@dataclass(frozen=True)
class ScopeStatus:
    """One scope now: what it covers, its stage since when, its evidence and criteria."""

    scope: str
    covers: str
    stage: Mode
    since: datetime
    evidence: Evidence
    criteria: list[Criterion]
    next_stage: Mode | None
    max_risk: str = ""

    def lines(self) -> list[str]:
        """The evidence and each exit criterion in plain words (the terminal's and Slack's)."""
        seen = self.evidence
        cpa = "-" if seen.cost_per_action is None else f"${seen.cost_per_action:.4f}"
        out = [
            f"{seen.days:.1f} days in stage, {seen.incidents} judged incidents, "
            f"{seen.proposals} proposals, agreement {seen.agreement.words()}",
            "FP "
            + ", ".join(f"{r} {v.words()}" for r, v in seen.fp.items())
            + "; FN "
            + ", ".join(f"{r} {v.words()}" for r, v in seen.fn.items()),
            f"cost per action {cpa}, drift {seen.cost_drift:.1%}; "
            f"failed/compensated/in doubt {seen.failures}",
        ]
        if self.next_stage is None:
            return [*out, "last stage: no exit criteria"] if self.scope != DEFAULT_SCOPE else out
        verdict = "all met" if self.ready else "not all met"
        out.append(f"exit criteria to {self.next_stage.value} ({verdict}):")
        return out + [f"  {c.words()}" for c in self.criteria]

    @property
    def ready(self) -> bool:
        """Every exit criterion of the stage holds (never for gated, the last stage)."""
        return self.next_stage is not None and all(c.met for c in self.criteria)

    def as_json(self) -> dict[str, Any]:
        """The row as JSON (``opsgate rollout status --json``, metrics)."""
        seen = self.evidence
        return {
            "scope": self.scope,
            "covers": self.covers,
            "stage": self.stage.value,
            "since": self.since.isoformat(),
            "days": round(seen.days, 2),
            "incidents": seen.incidents,
            "proposals": seen.proposals,
            "fp": {r.value: [v.count, v.total] for r, v in seen.fp.items()},
            "fn": {r.value: [v.count, v.total] for r, v in seen.fn.items()},
            "agreement": [seen.agreement.count, seen.agreement.total],
            "cost_per_action_usd": seen.cost_per_action,
            "cost_drift": round(seen.cost_drift, 4),
            "failures": seen.failures,
            "next_stage": self.next_stage.value if self.next_stage else None,
            "ready": self.ready,
            "criteria": [
                {"name": c.name, "seen": c.seen, "bound": c.bound, "met": c.met}
                for c in self.criteria
            ],
        }


def scope_status(
    session: Session, config: RolloutConfig, *, default: Mode, now: datetime
) -> list[ScopeStatus]:
    """Every configured scope, then the default scope (steps no rule covers, global mode)."""
    rows = stage_rows(session)
    stages = current_stages(session, config, rows)
    starts = {rule.id: (rows[rule.id].since if rule.id in rows else now) for rule in config.scopes}
    earliest = min(starts.values(), default=now)
    found = judgements(session, since=min(earliest, now), until=now)
    out = []
    for rule in config.scopes:
        stage = stages[rule.id]
        since = starts[rule.id]
        seen = evidence(config, rule.id, found, since=since, until=now)
        criteria = config.criteria(stage)
        out.append(
            ScopeStatus(
                scope=rule.id,
                covers=rule.describe(),
                stage=stage,
                since=since,
                evidence=seen,
                criteria=evaluate(criteria, seen) if criteria else [],
                next_stage=NEXT_STAGE.get(stage),
                max_risk=rule.max_risk.value if stage is Mode.GATED else "",
            )
        )
    if any(j.proposals or j.judged for j in found):
        seen = evidence(config, DEFAULT_SCOPE, found, since=earliest, until=now)
        out.append(
            ScopeStatus(
                scope=DEFAULT_SCOPE,
                covers="steps no scope covers (global mode)",
                stage=default,
                since=earliest,
                evidence=seen,
                criteria=[],
                next_stage=None,
            )
        )
    return out


def status_text(rows: list[ScopeStatus]) -> str:
    """The table a terminal shows (``opsgate rollout status``)."""
    if not rows:
        return "No rollout scopes are configured: every step runs in the global mode."
    lines = []
    for row in rows:
        head = f"{row.scope}  [{row.stage.value}]  {row.covers}"
        if row.max_risk:
            head += f"  (runs alone up to {row.max_risk} risk)"
        lines += [head, *(f"  {line}" for line in row.lines()), ""]
    return "\n".join(lines).rstrip() + "\n"
