"""Durable knowledge: versioned documents (runbooks, policy packs, facts) in the database.

A document is stored under ``(kind, key)``; saving different content adds version ``n + 1``,
saving the same content changes nothing, and a document that disappears gets a tombstone
version. Plans pin the versions they were built from (``"runbook:web-restart" -> 3``).
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_
from sqlmodel import Session, select

from common import canonical_json
from orchestration.models import Knowledge
from orchestration.runbooks import Runbook

TOMBSTONE: dict[str, Any] = {"deleted": True}


def pin_key(kind: str, key: str) -> str:
    """The key a plan uses to pin one document: ``kind:key``."""
    return f"{kind}:{key}"


@dataclass(frozen=True)
class Document:
    """A document to store."""

    kind: str
    key: str
    body: Mapping[str, Any]
    source: str = ""

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical body."""
        return hashlib.sha256(canonical_json(self.body).encode()).hexdigest()


@dataclass(frozen=True)
class KnowledgeSnapshot:
    """What the Planner may read: runbooks and the versions they are stored under."""

    runbooks: Mapping[str, Runbook]
    versions: Mapping[str, int] = field(default_factory=dict)

    def pins_for(self, runbook_id: str) -> dict[str, int]:
        """Versions a plan built from ``runbook_id`` depends on (the runbook, the policy pack)."""
        keys = [pin_key("runbook", runbook_id)]
        keys += sorted(k for k in self.versions if k.startswith("policy:"))
        return {k: self.versions[k] for k in keys if k in self.versions}


def latest_versions(session: Session, kinds: Iterable[str] | None = None) -> dict[str, int]:
    """Latest stored version of every document (optionally of some kinds only)."""
    query = select(Knowledge.kind, Knowledge.key, func.max(Knowledge.version)).group_by(
        Knowledge.kind, Knowledge.key
    )
    if kinds is not None:
        query = query.where(Knowledge.kind.in_(list(kinds)))  # type: ignore[attr-defined]
    return {pin_key(kind, key): int(version) for kind, key, version in session.exec(query)}


def pinned_versions(session: Session, pins: Iterable[str]) -> dict[str, int]:
    """Current versions of the pinned documents only (``kind:key`` names), one indexed query."""
    pairs = [tuple(pin.split(":", 1)) for pin in pins]
    if not pairs:
        return {}
    table = Knowledge.__table__  # type: ignore[attr-defined]
    query = (
        select(table.c.kind, table.c.key, func.max(table.c.version))
        .where(or_(*(and_(table.c.kind == kind, table.c.key == key) for kind, key in pairs)))
        .group_by(table.c.kind, table.c.key)
    )
    rows = session.connection().execute(query)
    return {pin_key(kind, key): int(version) for kind, key, version in rows}


def sync_documents(
    session: Session, *, kind: str, documents: Iterable[Document], now: datetime
) -> dict[str, int]:
    """Store ``documents`` of ``kind``; changed content becomes a new version; returns versions.

    Documents of ``kind`` that are stored but absent from ``documents`` get a tombstone.
    """
    current = {
        row.key: row
        for row in session.exec(
            select(Knowledge)
            .where(Knowledge.kind == kind)
            .order_by(Knowledge.key, Knowledge.version)  # type: ignore[arg-type]
        )
    }
    seen: set[str] = set()
    versions: dict[str, int] = {}
    for doc in documents:
        seen.add(doc.key)
        versions[pin_key(kind, doc.key)] = _save(session, current.get(doc.key), doc, now)
    for key, row in current.items():
        if key not in seen and row.body != TOMBSTONE:
            _save(session, row, Document(kind, key, TOMBSTONE), now)
    return versions


def _save(session: Session, latest: Knowledge | None, doc: Document, now: datetime) -> int:
    digest = doc.content_hash
    if latest is not None and latest.content_hash == digest:
        return latest.version
    version = 1 if latest is None else latest.version + 1
    session.add(
        Knowledge(
            kind=doc.kind,
            key=doc.key,
            version=version,
            content_hash=digest,
            body=dict(doc.body),
            source=doc.source,
            created_at=now,
        )
    )
    session.flush()
    return version


def stale_pins(pins: Mapping[str, int], current: Mapping[str, int]) -> list[str]:
    """Pinned documents whose current version differs (changed or deleted)."""
    return sorted(key for key, version in pins.items() if current.get(key) != version)
