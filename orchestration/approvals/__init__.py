"""Votes on approval records: the only path from a human click to a grant.

A nonce names one approval record. ``cast_vote`` refuses, with a stable code and a plain
reason, every vote that must not count: unknown nonce, decided or expired record, a plan that
changed or went stale, changed args, a voter who may not vote (policy: ``eligible_voter`` for
approvals, ``eligible_rejecter`` for rejections), a second vote by the same person. One
eligible rejection decides at once: a veto needs no quorum, so the requester may cast it too.
``record_reason`` later attaches the rejecter's optional reason to that decided record.

Reaching quorum is atomic: the plan's row and then the record's are locked (``SELECT ... FOR
UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so of two simultaneous final votes
exactly one issues the grant and starts the step. Plan first, approvals second is the one lock
order of every unit of work that locks both (``lifecycle.skip_open_steps`` too); the reverse
order deadlocked a final vote against ``close_incident``.

Public functions: ``cast_vote``, ``record_reason``, ``expire``, ``expire_due``,
``clean_reason``; ``VoteResult`` is what a vote hands back to the control plane.
"""

from orchestration.approvals.common import REASON_MAX_CHARS, VoteResult, clean_reason
from orchestration.approvals.expiry import expire, expire_due
from orchestration.approvals.reasons import record_reason
from orchestration.approvals.votes import cast_vote

__all__ = [
    "REASON_MAX_CHARS",
    "VoteResult",
    "cast_vote",
    "clean_reason",
    "expire",
    "expire_due",
    "record_reason",
]
