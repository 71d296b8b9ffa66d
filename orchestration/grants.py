"""Grants: short-lived credentials scoped to exactly one tool action and args hash.

Only the control plane issues them, and only for a step that policy allowed and whose quorum
is met. The signed value handed to the Executor is an ``adapters.Grant``; adapters refuse any
call whose grant is missing, forged, expired, or scoped to another action or other args.
"""

import uuid
from datetime import timedelta

from sqlalchemy import Table
from sqlmodel import Session

from adapters import Grant, GrantSigner
from orchestration.authority import audit_issued
from orchestration.db import append_row
from orchestration.models import Grant as GrantRow
from orchestration.models import Step
from orchestration.records import Ctx, audit
from orchestration.rows import StepRow

_GRANTS: Table = GrantRow.__table__  # type: ignore[attr-defined]


def issue_grant(
    session: Session,
    ctx: Ctx,
    *,
    step: Step | StepRow,
    signer: GrantSigner,
    ttl_s: int,
    credentials: tuple[str, ...] = (),
) -> Grant:
    """Issue, store and audit a grant for ``step`` (carrying ``credentials``)."""
    return issue_scoped_grant(
        session,
        ctx,
        step_id=step.id,
        tool_action=step.tool_action,
        args_hash=step.args_hash,
        signer=signer,
        ttl_s=ttl_s,
        credentials=credentials,
    )


def issue_scoped_grant(
    session: Session,
    ctx: Ctx,
    *,
    step_id: str,
    tool_action: str,
    args_hash: str,
    signer: GrantSigner,
    ttl_s: int,
    credentials: tuple[str, ...] = (),
) -> Grant:
    """Issue, store and audit a grant for one call made on behalf of ``step_id``.

    The step's own action, or another read-only action done for it (an in-doubt check).
    ``credentials`` are the ones the call may present (:mod:`orchestration.authority`).
    """
    tool, _, action = tool_action.partition(".")
    expires = ctx.now + timedelta(seconds=ttl_s)
    grant = signer.issue(
        grant_id=uuid.uuid4().hex,
        tool=tool,
        action=action,
        args_hash=args_hash,
        expires_at=expires,
        credentials=credentials,
    )
    # Insert-only and never read back in the unit that issues it: one batched INSERT.
    append_row(
        session,
        _GRANTS,
        {
            "id": grant.grant_id,
            "step_id": step_id,
            "tool": tool,
            "action": action,
            "args_hash": args_hash,
            "issued_at": ctx.now,
            "expires_at": expires,
            "signature": grant.signature,
        },
    )
    audit(
        session,
        ctx,
        "grant_issued",
        step_id=step_id,
        detail={"grant_id": grant.grant_id, "scope": tool_action, "ttl_s": ttl_s}
        | ({"authorities": list(grant.credentials)} if grant.credentials else {}),
    )
    if grant.credentials:
        audit_issued(
            session,
            ctx,
            step_id=step_id,
            tool_action=tool_action,
            credentials=grant.credentials,
            expires_at=expires,
            grant_id=grant.grant_id,
        )
    return grant
