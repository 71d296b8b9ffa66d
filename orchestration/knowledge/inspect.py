"""What the store holds of knowledge, for people: ``opsgate knowledge list|show|diff``.

Everything here reads; nothing is published. A document is named ``kind:key`` (``runbook:web-
restart``, ``policy:pack``) or by its key alone when only one kind has it, optionally with
``@VERSION`` (default: the latest). ``list`` can also show what one plan was built from: its
pinned versions, and for each whether it is still the latest.
"""

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from sqlalchemy import func
from sqlalchemy import select as core_select
from sqlmodel import Session, col, or_, select

from orchestration.errors import BadRequest, NotFound
from orchestration.knowledge.store import is_tombstone, pin_key, split_pin
from orchestration.models import Knowledge, Plan


@dataclass(frozen=True)
class DocumentSummary:
    """One document's history in a line."""

    pin: str
    versions: int
    latest: int
    content_hash: str
    changed_at: datetime
    retired: bool
    source: str
    pinned: int | None = None  # with a plan: the version the plan pinned

    def line(self) -> dict[str, Any]:
        """A JSON-ready record."""
        out: dict[str, Any] = {
            "name": self.pin,
            "latest": self.latest,
            "versions": self.versions,
            "content_hash": self.content_hash,
            "changed_at": self.changed_at.isoformat(),
            "retired": self.retired,
            "source": self.source,
        }
        if self.pinned is not None:
            out["pinned"] = self.pinned
            out["current"] = self.pinned == self.latest and not self.retired
        return out


@dataclass(frozen=True)
class StoredDocument:
    """One version of one document."""

    pin: str
    version: int
    latest: int
    content_hash: str
    created_at: datetime
    source: str
    body: Mapping[str, Any]

    @property
    def retired(self) -> bool:
        """True for a tombstone (the runbook was retired or deleted)."""
        return is_tombstone(self.body)

    def text(self) -> str:
        """The body as YAML, in its stored key order."""
        return yaml.safe_dump(dict(self.body), sort_keys=False, allow_unicode=True, width=100)

    def line(self) -> dict[str, Any]:
        """A JSON-ready record."""
        return {
            "name": self.pin,
            "version": self.version,
            "latest": self.latest,
            "content_hash": self.content_hash,
            "created_at": self.created_at.isoformat(),
            "source": self.source,
            "retired": self.retired,
            "body": dict(self.body),
        }


def parse_name(text: str) -> tuple[str, int | None]:
    """``NAME[@VERSION]`` into the name and the version (None: the latest).

    Raises:
        BadRequest: the version is not a positive whole number, or the name is empty.
    """
    name, at, version = text.strip().rpartition("@") if "@" in text else (text.strip(), "", "")
    if not name:
        raise BadRequest(f"{text!r}: name a document, e.g. runbook:web-restart or web-restart@2")
    if not at:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise BadRequest(f"{text!r}: the version after @ must be a number from 1, e.g. {name}@2")
    return name, int(version)


def resolve_pin(session: Session, name: str) -> str:
    """The ``kind:key`` that ``name`` means.

    Raises:
        NotFound: no stored document has that name (the message lists close ones).
        BadRequest: a bare key that several kinds have.
    """
    kind, key = split_pin(name) if ":" in name else ("", name)
    query = select(Knowledge.kind, Knowledge.key).distinct()
    query = query.where(Knowledge.key == key)
    if kind:
        query = query.where(Knowledge.kind == kind)
    found = sorted({pin_key(k, v) for k, v in session.exec(query)})
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise BadRequest(f"{name!r} is the key of {', '.join(found)}: say which, with kind:key")
    every = sorted({pin_key(k, v) for k, v in session.exec(select(Knowledge.kind, Knowledge.key))})
    close = difflib.get_close_matches(name, every, n=3, cutoff=0.4) or difflib.get_close_matches(
        key, [split_pin(p)[1] for p in every], n=3, cutoff=0.4
    )
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise NotFound(f"no stored document is named {name!r}{hint} (opsgate knowledge list)")


def summaries(session: Session, *, plan_ref: str | None = None) -> list[DocumentSummary]:
    """Every stored document, one line each; with ``plan_ref``, only what that plan pinned.

    Raises:
        NotFound: no plan (or unique prefix of a plan id) is ``plan_ref``.
    """
    pins: dict[str, int] | None = None
    if plan_ref is not None:
        pins = dict(_plan(session, plan_ref).knowledge_pins)
    table = Knowledge.__table__  # type: ignore[attr-defined]
    stats = core_select(
        table.c.kind, table.c.key, func.count(), func.max(table.c.version)
    ).group_by(table.c.kind, table.c.key)
    counted = {
        pin_key(kind, key): (int(n), int(latest))
        for kind, key, n, latest in session.connection().execute(stats)
    }
    if pins is not None:
        counted = {pin: counted.get(pin, (0, 0)) for pin in pins}
    latest_rows: dict[str, Knowledge] = {}
    if counted:
        conditions = [
            (Knowledge.kind == split_pin(pin)[0])
            & (Knowledge.key == split_pin(pin)[1])
            & (Knowledge.version == latest)
            for pin, (_, latest) in counted.items()
            if latest
        ]
        if conditions:
            for stored in session.exec(select(Knowledge).where(or_(*conditions))):
                latest_rows[pin_key(stored.kind, stored.key)] = stored
    out = []
    for pin, (versions, latest) in sorted(counted.items()):
        row = latest_rows.get(pin)
        if row is None:  # a pin whose document the store no longer has
            continue
        out.append(
            DocumentSummary(
                pin=pin,
                versions=versions,
                latest=latest,
                content_hash=row.content_hash,
                changed_at=row.created_at,
                retired=is_tombstone(row.body),
                source=row.source,
                pinned=pins.get(pin) if pins is not None else None,
            )
        )
    return out


def document(session: Session, name: str, version: int | None = None) -> StoredDocument:
    """One stored version of ``name`` (the latest when ``version`` is None).

    Raises:
        NotFound: no such document, or no such version of it (the message says which exist).
    """
    pin = resolve_pin(session, name)
    kind, key = split_pin(pin)
    rows = session.exec(
        select(Knowledge)
        .where(Knowledge.kind == kind, Knowledge.key == key)
        .order_by(col(Knowledge.version))
    ).all()
    latest = rows[-1].version
    wanted = latest if version is None else version
    for row in rows:
        if row.version == wanted:
            return StoredDocument(
                pin=pin,
                version=row.version,
                latest=latest,
                content_hash=row.content_hash,
                created_at=row.created_at,
                source=row.source,
                body=row.body,
            )
    stored = ", ".join(str(r.version) for r in rows)
    raise NotFound(f"{pin} has no version {wanted}; stored versions: {stored}")


def diff(older: StoredDocument, newer: StoredDocument) -> str:
    """A unified diff of two versions' YAML ("" when their content is the same)."""
    if older.content_hash == newer.content_hash:
        return ""
    lines = difflib.unified_diff(
        older.text().splitlines(keepends=True),
        newer.text().splitlines(keepends=True),
        fromfile=f"{older.pin}@{older.version} ({older.created_at:%Y-%m-%d %H:%M} UTC)",
        tofile=f"{newer.pin}@{newer.version} ({newer.created_at:%Y-%m-%d %H:%M} UTC)",
    )
    return "".join(lines)


def _plan(session: Session, ref: str) -> Plan:
    plan = session.get(Plan, ref)
    if plan is not None:
        return plan
    if len(ref) < 4:
        raise BadRequest(f"{ref!r}: give at least 4 characters of a plan id")
    found = session.exec(
        select(Plan).where(col(Plan.id).startswith(ref)).order_by(col(Plan.id)).limit(2)
    ).all()
    if len(found) == 1:
        return found[0]
    if found:
        raise BadRequest(f"{ref!r} is the start of several plan ids: give more of it")
    raise NotFound(f"no plan id starts with {ref!r}")
