"""Policy evaluation for opsgate: may this role run this tool call now, and with whose approval?

Policies are pure. They take a plain :class:`PolicyContext` (role, tool, action, args, declared
risk, read-only, mode, requester, approvers) and a :class:`Pack` (the policy pack, YAML) and return
a :class:`Decision` (allow / require_approval / deny, with a stable code and a reason in plain
words). They do no I/O, hold no state and import nothing of opsgate but ``common``; the only file
they read is a policy pack, in :mod:`policies.pack`.

:func:`evaluate` runs the chain in :mod:`policies.engine`; the first policy to decide wins.
:func:`eligible_voter` says whether one approval vote counts; :func:`eligible_rejecter` whether
one rejection does (approvers and the requester may always veto).

Errors: every error is a :class:`PolicyError` with a stable ``code``. The only one raised today is
:class:`PackError` (``invalid_pack``): a pack that does not parse or validate, with ``path``,
1-based ``line`` and a ``message`` that says what to change.

Decision codes (:class:`Code`), besides the ``code`` of each deny rule in the pack
(``destructive_sql``, ``recursive_delete``, ``disk_wipe``, ``delete_production``,
``terraform_destroy`` in the default pack):

- ``role_forbidden``: the planner never calls tools.
- ``role_read_only``: researchers and auditors only call read-only actions.
- ``denials_escalated``: too many denials in one plan; ``escalate_to_humans`` is set.
- ``critical_never_runs``: critical-risk steps never run.
- ``risk_denied``: the pack denies every step at this risk.
- ``shadow_mode``: shadow mode executes nothing.
- ``low_risk_auto``: allowed without approval.
- ``needs_one_approval`` / ``needs_two_approvals`` / ``needs_approval`` (three or more).

Vote codes (:class:`Eligibility`): ``vote_counts``, ``not_an_approver``,
``requester_cannot_approve``, ``no_approval_needed``.

:func:`may_close` says whether a person may resolve or cancel an incident (the pack's
``incidents`` rules): ``close_allowed`` or ``close_forbidden``.
"""

from policies.closing import CloseAction, CloseContext, closer_roles, may_close
from policies.engine import (
    CHAIN,
    ROLE_SCOPES,
    Policy,
    RiskAssessment,
    Scope,
    approval_reason,
    assess_risk,
    eligible_rejecter,
    eligible_voter,
    evaluate,
    missing_requirements,
)
from policies.model import (
    Code,
    Decision,
    Eligibility,
    PackError,
    PolicyContext,
    PolicyError,
    Verdict,
)
from policies.pack import (
    Approval,
    ApprovalLevel,
    Closer,
    DenyRule,
    EscalateRule,
    Incidents,
    Pack,
    RequireRule,
    Rule,
    check_pack,
    check_pack_text,
    default_pack,
    load_pack,
    load_pack_text,
)

__all__ = [
    "CHAIN",
    "ROLE_SCOPES",
    "Approval",
    "ApprovalLevel",
    "CloseAction",
    "CloseContext",
    "Closer",
    "Code",
    "Decision",
    "DenyRule",
    "Eligibility",
    "EscalateRule",
    "Incidents",
    "Pack",
    "PackError",
    "Policy",
    "PolicyContext",
    "PolicyError",
    "RequireRule",
    "RiskAssessment",
    "Rule",
    "Scope",
    "Verdict",
    "approval_reason",
    "assess_risk",
    "check_pack",
    "check_pack_text",
    "closer_roles",
    "default_pack",
    "eligible_rejecter",
    "eligible_voter",
    "evaluate",
    "load_pack",
    "load_pack_text",
    "may_close",
    "missing_requirements",
]
