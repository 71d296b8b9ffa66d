"""Which credentials a step's grant carries, scope extensions humans approve, and their audit.

The tool declares the credential each call presents and which roles hold it
(:mod:`adapters.credentials`). The Executor's grant names the credential of its step's action
when the Executor holds it, or when humans added it to this plan's scope: an approved scope
card (:data:`ApprovalPurpose.SCOPE`) writes ``scope:<credential>`` into the plan's task memory,
which ends with the plan. A step that needs a credential its grant lacks is refused by the
guard with ``credential_missing`` before anything is sent; :func:`ask_for_scope` then parks it
behind a scope card, and approving the card runs it again.

Every credential issued (with a grant) and every secret used by a call is an audit event:
role, step, scope, expiry, lease; never a value. Credential names are stored under
``authority`` (a key named ``credential`` would be redacted as if it held one).
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from adapters import ToolCall
from adapters.base import preview_action
from adapters.credentials import CredentialSpec, CredentialUse, holds
from adapters.errors import AdapterError
from common import Role
from orchestration.db import upsert
from orchestration.models import AuditEvent, Step, TaskMemory
from orchestration.models import Grant as GrantRow
from orchestration.records import Ctx, audit
from orchestration.rows import PlanRow, StepRow
from orchestration.runtime import Runtime
from orchestration.views import ScopeView, TokenView

SCOPE_PREFIX = "scope:"
CREDENTIAL_MISSING = "credential_missing"


def call_credential(
    rt: Runtime, tool_action: str, args: Mapping[str, Any]
) -> CredentialSpec | None:
    """The credential a call of ``tool_action`` with ``args`` presents, if any."""
    try:
        tool, _action = rt.tools.action(tool_action)
    except AdapterError:
        return None  # refused as unknown by the guards, with their own message
    name, _, action = tool_action.partition(".")
    call = ToolCall(tool=name, action=action, args=dict(args), idempotency_key="")
    return tool.spec.credential(call)


def extended(session: Session, plan_id: str, credential: str) -> bool:
    """True when humans added ``credential`` to the scope of plan ``plan_id``."""
    row = session.get(TaskMemory, (plan_id, SCOPE_PREFIX + credential))
    return row is not None and row.value.get("state") == "approved"


def granted_credentials(
    session: Session,
    rt: Runtime,
    *,
    plan_id: str,
    tool_action: str,
    args: Mapping[str, Any],
    role: Role = Role.EXECUTOR,
) -> tuple[str, ...]:
    """The credentials a grant for this call names: the one it presents, if ``role`` holds it."""
    credential = call_credential(rt, tool_action, args)
    if credential is None:
        return ()
    if holds(role, credential):
        return (credential.name,)
    if role is Role.EXECUTOR and extended(session, plan_id, credential.name):
        return (credential.name,)
    return ()


def extend_scope(
    session: Session, ctx: Ctx, *, plan_id: str, step_id: str, credential: str, nonce: str
) -> None:
    """Add ``credential`` to the Executor's scope for this plan only (humans approved it)."""
    upsert(
        session,
        TaskMemory.__table__,  # type: ignore[attr-defined]
        {
            "plan_id": plan_id,
            "key": SCOPE_PREFIX + credential,
            "updated_at": ctx.now,
            "value": {"state": "approved", "step_id": step_id, "nonce": nonce},
        },
        keys=["plan_id", "key"],
    )
    audit(
        session,
        ctx,
        "scope_extended",
        step_id=step_id,
        nonce=nonce,
        role=Role.AUDITOR,
        detail={"authority": credential, "holder": Role.EXECUTOR.value, "for": "this plan"},
    )


def audit_issued(
    session: Session,
    ctx: Ctx,
    *,
    step_id: str,
    tool_action: str,
    credentials: Sequence[str],
    expires_at: datetime,
    grant_id: str,
) -> None:
    """One ``credential_issued`` event per credential a grant carries."""
    for name in credentials:
        audit(
            session,
            ctx,
            "credential_issued",
            step_id=step_id,
            role=Role.EXECUTOR,
            detail={
                "authority": name,
                "scope": tool_action,
                "grant_id": grant_id,
                "expires_at": expires_at,
            },
        )


def audit_used(
    session: Session,
    ctx: Ctx,
    *,
    step: StepRow | Any,
    uses: Sequence[CredentialUse],
) -> None:
    """One ``credential_used`` event per secret a call resolved (reference, source, lease)."""
    for use in uses:
        detail: dict[str, Any] = {
            "secret": f"${{secret:{use.secret}}}",
            "source": use.source,
            "scope": step.tool_action,
        }
        if use.lease_id is not None:
            detail |= {"lease_id": use.lease_id, "expires_at": use.expires_at}
            detail["revoked"] = bool(use.revoked)
        audit(session, ctx, "credential_used", step_id=step.id, role=Role.EXECUTOR, detail=detail)


def missing_credential(rt: Runtime, step: StepRow | Any) -> CredentialSpec | None:
    """The credential a step failed for lack of (None when the tool declares none)."""
    return call_credential(rt, step.tool_action, step.args)


def scope_reason(credential: CredentialSpec, step: StepRow | Any, plan: PlanRow | Any) -> str:
    """The card's plain words: what would be added, for what, for how long."""
    kind = "read-only" if credential.read_only else "state-changing"
    return (
        f"Step '{step.title}' ({step.tool_action}) needs the {kind} credential "
        f"{credential.name!r}, which the Executor does not hold. Approve to add it to the "
        f"Executor's scope for this plan only (plan {plan.id[:8]}); the step then runs again."
    )


def running_scope(session: Session, step: Step) -> ScopeView | None:
    """What a running step's latest grant allows (action, credentials, expiry), and the tokens
    minted for its calls under that grant (service account, expiry; never a value)."""
    grant = session.exec(
        select(GrantRow)
        # A running step's call never runs under the grant of the dry run for its card.
        .where(GrantRow.step_id == step.id, col(GrantRow.action).not_like(preview_action("%")))
        .order_by(col(GrantRow.issued_at).desc())
        .limit(1)
    ).first()
    if grant is None:
        return None
    events = session.exec(
        select(AuditEvent).where(
            AuditEvent.plan_id == step.plan_id,
            AuditEvent.step_id == step.id,
            col(AuditEvent.event).in_(("credential_issued", "credential_minted")),
        )
    ).all()
    mine = [e for e in events if e.detail.get("grant_id") == grant.id]
    names = sorted(
        {
            str(e.detail.get("authority"))
            for e in mine
            if e.event == "credential_issued" and e.detail.get("authority")
        }
    )
    tokens = tuple(
        TokenView(
            service_account=str(e.detail.get("service_account") or "?"),
            expires_at=str(e.detail.get("expires_at") or ""),
        )
        for e in sorted(mine, key=lambda e: (e.at, e.id or 0))
        if e.event == "credential_minted"
    )
    return ScopeView(
        grant_id=grant.id,
        tool_action=f"{grant.tool}.{grant.action}",
        credentials=tuple(names),
        expires_at=grant.expires_at,
        tokens=tokens,
    )
