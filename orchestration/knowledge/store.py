"""Versioned documents (runbooks, the policy pack, facts) in the ``knowledge`` table.

A document is stored under ``(kind, key)``; each new content adds version ``n + 1`` and rows
are never changed or removed, so a version names one body for good. A tombstone (a body with
``deleted: true``) marks a retired document. Plans pin the versions they were built from
(``"runbook:web-restart" -> 3``).
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, or_
from sqlalchemy import select as core_select
from sqlmodel import Session, select

from common import canonical_json
from orchestration.models import Knowledge

TOMBSTONE: dict[str, Any] = {"deleted": True}


def pin_key(kind: str, key: str) -> str:
    """The key a plan uses to pin one document: ``kind:key``."""
    return f"{kind}:{key}"


def split_pin(pin: str) -> tuple[str, str]:
    """``kind:key`` back into ``(kind, key)``."""
    kind, _, key = pin.partition(":")
    return kind, key


def is_tombstone(body: Mapping[str, Any]) -> bool:
    """True when ``body`` marks a retired document."""
    return body.get("deleted") is True


def content_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``body`` (independent of key order)."""
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


@dataclass(frozen=True)
class Document:
    """A document to store."""

    kind: str
    key: str
    body: Mapping[str, Any]
    source: str = ""

    @property
    def pin(self) -> str:
        """``kind:key``."""
        return pin_key(self.kind, self.key)

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical body."""
        return content_hash(self.body)


@dataclass(frozen=True)
class StoredVersion:
    """One stored version with its body."""

    version: int
    content_hash: str
    body: Mapping[str, Any]


class Published(StrEnum):
    """What publishing one document did."""

    CURRENT = "current"  # the stored latest version already has this content
    ADDED = "added"  # content never stored: it is the new latest version
    BEHIND = "behind"  # an older version has this content: nothing is written back


@dataclass(frozen=True)
class PublishResult:
    """The outcome for one document.

    ``version`` is the stored latest version after publishing; ``file_version`` the version
    holding the published content (0 when none does: a marker for a never-stored runbook).
    """

    outcome: Published
    version: int
    file_version: int

    @property
    def added(self) -> bool:
        """True when a new version was written."""
        return self.outcome is Published.ADDED


def latest_versions(session: Session, kinds: Iterable[str] | None = None) -> dict[str, int]:
    """Latest stored version of every document (optionally of some kinds only)."""
    query = select(Knowledge.kind, Knowledge.key, func.max(Knowledge.version)).group_by(
        Knowledge.kind, Knowledge.key
    )
    if kinds is not None:
        query = query.where(Knowledge.kind.in_(list(kinds)))  # type: ignore[attr-defined]
    return {pin_key(kind, key): int(version) for kind, key, version in session.exec(query)}


def _table() -> Any:
    return Knowledge.__table__  # type: ignore[attr-defined]


def pinned_versions(session: Session, pins: Iterable[str]) -> dict[str, int]:
    """Current versions of the pinned documents only (``kind:key`` names), one indexed query."""
    pairs = [split_pin(pin) for pin in pins]
    if not pairs:
        return {}
    table = _table()
    query = (
        core_select(table.c.kind, table.c.key, func.max(table.c.version))
        .where(or_(*(and_(table.c.kind == kind, table.c.key == key) for kind, key in pairs)))
        .group_by(table.c.kind, table.c.key)
    )
    rows = session.connection().execute(query)
    return {pin_key(kind, key): int(version) for kind, key, version in rows}


def stale_pins(pins: Mapping[str, int], current: Mapping[str, int]) -> list[str]:
    """Pinned documents whose current version differs (changed or deleted)."""
    return sorted(key for key, version in pins.items() if current.get(key) != version)


def behind(session: Session, pins: Mapping[str, int]) -> list[str]:
    """Pins that are no longer the stored latest versions (one indexed query)."""
    return stale_pins(pins, pinned_versions(session, pins))


def load_versions(session: Session, wanted: Mapping[str, int]) -> dict[str, StoredVersion]:
    """The stored bodies of exactly the ``pin -> version`` pairs in ``wanted``."""
    if not wanted:
        return {}
    table = _table()
    conditions = []
    for pin, version in wanted.items():
        kind, key = split_pin(pin)
        conditions.append(
            and_(table.c.kind == kind, table.c.key == key, table.c.version == version)
        )
    query = core_select(
        table.c.kind, table.c.key, table.c.version, table.c.content_hash, table.c.body
    ).where(or_(*conditions))
    return {
        pin_key(kind, key): StoredVersion(int(version), digest, body)
        for kind, key, version, digest, body in session.connection().execute(query)
    }


def stored_hashes(session: Session, kinds: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
    """Every stored ``(version, content_hash)`` of each document of ``kinds``, oldest first.

    Bodies are not read: this is what deciding "new, current or older content" needs.
    """
    table = _table()
    query = (
        core_select(table.c.kind, table.c.key, table.c.version, table.c.content_hash)
        .where(table.c.kind.in_(list(kinds)))
        .order_by(table.c.kind, table.c.key, table.c.version)
    )
    history: dict[str, list[tuple[int, str]]] = {}
    for kind, key, version, digest in session.connection().execute(query):
        history.setdefault(pin_key(kind, key), []).append((int(version), digest))
    return history


def publish_documents(
    session: Session, documents: Iterable[Document], *, now: datetime
) -> dict[str, PublishResult]:
    """Store each document whose content was never stored under its key as the next version.

    Content equal to the latest version changes nothing; content equal to an *older* version
    is not written back (the files holding it are behind, or were rolled back): a replica
    that has not caught up must never undo a newer version. Nothing is ever deleted here.
    """
    docs = list(documents)
    history = stored_hashes(session, {doc.kind for doc in docs})
    results: dict[str, PublishResult] = {}
    for doc in docs:
        versions = history.get(doc.pin, [])
        digest = doc.content_hash
        latest_version, latest_hash = versions[-1] if versions else (0, "")
        older = [version for version, seen in versions if seen == digest]
        if digest == latest_hash:
            results[doc.pin] = PublishResult(Published.CURRENT, latest_version, latest_version)
        elif older:
            results[doc.pin] = PublishResult(Published.BEHIND, latest_version, older[-1])
        elif is_tombstone(doc.body) and _latest_is_tombstone(session, doc, latest_version):
            # Retiring a retired document changes nothing.
            results[doc.pin] = PublishResult(Published.CURRENT, latest_version, 0)
        elif is_tombstone(doc.body) and not versions:
            # Nothing to retire: a marker for a runbook that was never stored adds nothing.
            results[doc.pin] = PublishResult(Published.CURRENT, 0, 0)
        else:
            session.add(
                Knowledge(
                    kind=doc.kind,
                    key=doc.key,
                    version=latest_version + 1,
                    content_hash=digest,
                    body=dict(doc.body),
                    source=doc.source,
                    created_at=now,
                )
            )
            version = latest_version + 1
            results[doc.pin] = PublishResult(Published.ADDED, version, version)
    session.flush()
    return results


def _latest_is_tombstone(session: Session, doc: Document, version: int) -> bool:
    if version == 0:
        return False
    stored = load_versions(session, {doc.pin: version}).get(doc.pin)
    return stored is not None and is_tombstone(stored.body)
