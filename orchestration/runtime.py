"""What units of work need besides the session: config-derived settings and collaborators."""

from dataclasses import dataclass

from adapters import GrantSigner, ToolRegistry
from common import Clock, Mode, Risk, Role
from orchestration.config import OpsgateConfig
from orchestration.models import Plan, Step
from policies import Decision, Pack, PolicyContext, evaluate


@dataclass(frozen=True)
class Runtime:
    """Settings and collaborators shared by every unit of work of one control plane."""

    config: OpsgateConfig
    pack: Pack
    tools: ToolRegistry
    signer: GrantSigner
    clock: Clock
    approvers: frozenset[str]

    @property
    def mode(self) -> Mode:
        """The configured autonomy mode."""
        return self.config.mode

    @property
    def approval_ttl_minutes(self) -> int:
        """How long an approval stays open: the config's value, unless the pack says longer."""
        return self.config.approval_ttl_minutes

    def decide(
        self, step: Step, plan: Plan, *, role: Role = Role.EXECUTOR, mode: Mode | None = None
    ) -> Decision:
        """The policy decision for running ``step`` of ``plan`` now."""
        tool, _, action = step.tool_action.partition(".")
        ctx = PolicyContext(
            role=role,
            tool=tool,
            action=action,
            args=step.args,
            risk=Risk(step.declared_risk),
            read_only=step.read_only,
            mode=mode or Mode(plan.mode),
            requester=plan.requester,
            approvers=self.approvers,
            denials_in_plan=plan.denials,
            runbook_id=plan.runbook_id,
            channel=plan.channel or None,
        )
        return evaluate(ctx, self.pack)
