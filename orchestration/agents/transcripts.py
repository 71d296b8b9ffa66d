"""Agent transcripts: redacted, gzip-compressed JSON rows, pruned after their retention.

The ``model_calls`` rows (each call's outcome) are pruned with them, at the same age.
"""

import gzip
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, delete, select

from common.redaction import redact
from orchestration.models import ModelCall, Transcript


def pack(calls: list[dict[str, Any]]) -> bytes:
    """The calls (request and response of each) as redacted, gzip-compressed JSON."""
    return gzip.compress(json.dumps(redact(calls), default=str).encode(), compresslevel=6)


def unpack(body: bytes) -> list[dict[str, Any]]:
    """The calls back from :func:`pack`."""
    data = json.loads(gzip.decompress(body))
    return data if isinstance(data, list) else []


def store(
    session: Session,
    *,
    plan_id: str,
    incident_id: str | None,
    role: str,
    model: str,
    calls: list[dict[str, Any]],
    tokens: int,
    now: datetime,
    retention_days: int,
) -> Transcript:
    """Add one transcript row, kept ``retention_days``."""
    row = Transcript(
        id=uuid.uuid4().hex,
        plan_id=plan_id,
        incident_id=incident_id,
        role=role,
        model=model,
        calls=len(calls),
        tokens=tokens,
        created_at=now,
        expires_at=now + timedelta(days=retention_days),
        body=pack(calls),
    )
    session.add(row)
    return row


def of_plan(session: Session, plan_id: str) -> list[Transcript]:
    """The transcripts of one plan, oldest first."""
    query = select(Transcript).where(Transcript.plan_id == plan_id)
    return list(session.exec(query.order_by(col(Transcript.created_at))))


def prune(session: Session, now: datetime, *, retention_days: int) -> int:
    """Delete the transcripts past their retention, and the call outcomes as old; returns how
    many transcripts."""
    result = session.exec(delete(Transcript).where(col(Transcript.expires_at) <= now))
    cutoff = now - timedelta(days=retention_days)
    session.exec(delete(ModelCall).where(col(ModelCall.at) <= cutoff))
    return int(result.rowcount or 0)
