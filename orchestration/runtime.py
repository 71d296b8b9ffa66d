"""What units of work need besides the session: config-derived settings and collaborators."""

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters import AdapterError, GrantSigner, ToolRegistry
from common import Clock, Mode, Risk, Role
from orchestration.agents.planning import LLM_RUNBOOK_ID
from orchestration.config import OpsgateConfig
from orchestration.enums import StepKind
from orchestration.knowledge.current import CurrentVersions
from orchestration.models import Plan, Step
from orchestration.rollout.scopes import DEFAULT_SCOPE
from orchestration.rollout.stages import StageBook
from orchestration.rows import PlanRow, StepRow
from policies import Decision, Pack, PolicyContext, Verdict, evaluate


def new_replica_id() -> str:
    """A name for this process among the replicas: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


@dataclass(frozen=True)
class Runtime:
    """Settings and collaborators shared by every unit of work of one control plane."""

    config: OpsgateConfig
    pack: Pack
    tools: ToolRegistry
    signer: GrantSigner
    clock: Clock
    approvers: frozenset[str]
    cache_ttls: Mapping[str, float] = field(default_factory=dict)
    replica_id: str = field(default_factory=new_replica_id)
    # The latest knowledge versions, shared by the runtime's copies (see knowledge.current).
    versions: CurrentVersions = field(default_factory=CurrentVersions)
    # The stage each rollout scope is in now (a demotion applies to plans in flight).
    stages: StageBook = field(default_factory=StageBook)

    @property
    def mode(self) -> Mode:
        """The configured autonomy mode (the stage of every step no rollout scope covers)."""
        return self.config.mode

    @property
    def approval_ttl_minutes(self) -> int:
        """How long an approval stays open: the config's value when set, else the pack's."""
        configured = self.config.approval_ttl_minutes
        return configured if configured is not None else self.pack.approval_ttl_minutes

    def cache_ttl_s(self, tool_action: str) -> float:
        """How long a read-only result of ``tool_action`` may be reused (0: never).

        ``cache_ttls`` (per tool, given by the composition root) wins over the config's
        ``adapters.<tool>.cache_ttl_s``.
        """
        tool = tool_action.split(".", 1)[0]
        if tool in self.cache_ttls:
            return float(self.cache_ttls[tool])
        limits = getattr(self.config.adapters, tool, None)
        return float(getattr(limits, "cache_ttl_s", 0.0) or 0.0)

    def tool_caches(self, tool: str) -> bool:
        """Whether any read of ``tool`` may be cached (else there is nothing to invalidate)."""
        return self.cache_ttl_s(f"{tool}.") > 0

    def decide(
        self,
        step: Step | StepRow,
        plan: Plan | PlanRow,
        *,
        role: Role = Role.EXECUTOR,
        mode: Mode | None = None,
    ) -> Decision:
        """The policy decision for running ``step`` of ``plan`` now."""
        tool, _, action = step.tool_action.partition(".")
        staged = step.rollout or {}
        if mode is None:
            mode = Mode(staged["stage"]) if staged.get("stage") else Mode(plan.mode)
            scope = staged.get("scope")
            if scope and scope != DEFAULT_SCOPE:
                mode = self.stages.floor(str(scope), mode)
        ctx = PolicyContext(
            role=role,
            tool=tool,
            action=action,
            args=step.args,
            risk=Risk(step.declared_risk),
            read_only=step.read_only,
            mode=mode,
            requester=plan.requester,
            approvers=self.approvers,
            denials_in_plan=plan.denials,
            runbook_id=plan.runbook_id,
            channel=plan.channel or None,
            canary=step.kind == StepKind.CANARY.value,
            has_canary=bool(step.canary_step),
            dry_run=self.previews(step.tool_action) and not step.read_only,
            gated_up_to=Risk(staged["max_risk"]) if staged.get("max_risk") else None,
            stage_scope=staged.get("scope") if staged.get("scope") != DEFAULT_SCOPE else None,
        )
        decision = evaluate(ctx, self.pack)
        if (
            plan.runbook_id == LLM_RUNBOOK_ID
            and not step.read_only
            and decision.verdict is Verdict.ALLOW
        ):
            # An LLM-proposed change always waits for a person, whatever the mode or stage.
            return Decision(
                verdict=Verdict.REQUIRE_APPROVAL,
                code="llm_change_needs_approval",
                reason="The LLM Planner proposed this change: a person approves it first.",
                risk=decision.risk,
                quorum=1,
                exclude_requester=False,
                rule_id="builtin:llm-change-approval",
                ttl_minutes=self.approval_ttl_minutes,
            )
        return decision

    def previews(self, tool_action: str) -> bool:
        """Whether ``tool_action`` offers a dry run before approval (``ActionSpec.previews``)."""
        try:
            _tool, spec = self.tools.action(tool_action)
        except AdapterError:
            return False
        return spec.previews
