"""Stored versions read without writing anything, for ``opsgate plan``'s preview.

The preview plans from this machine's files; the database, when there is one, only names the
versions those files' contents are stored under. No schema is created or migrated, SQLite is
opened read-only (a missing file stays missing) and PostgreSQL reads in a read-only
transaction.
"""

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from orchestration.knowledge.files import FileKnowledge
from orchestration.knowledge.snapshot import KnowledgeSnapshot
from orchestration.knowledge.store import is_tombstone, load_versions, stored_hashes

KINDS = ("runbook", "policy")


@dataclass(frozen=True)
class StoredIndex:
    """Every stored ``(version, content_hash)`` per document, and which latest ones are retired.

    ``reason`` says why nothing could be read (no database, unreachable, no schema yet).
    """

    history: Mapping[str, list[tuple[int, str]]] = field(default_factory=dict)
    retired: frozenset[str] = frozenset()
    reason: str = ""

    def latest(self, pin: str) -> int:
        """The latest stored version of ``pin`` (0 when none)."""
        versions = self.history.get(pin)
        return versions[-1][0] if versions else 0

    def version_of(self, pin: str, digest: str) -> int | None:
        """The newest version of ``pin`` with content ``digest``, if it is stored."""
        matches = [v for v, seen in self.history.get(pin, []) if seen == digest]
        return matches[-1] if matches else None


def _engine(url: str) -> Engine | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:" or not Path(database).is_file():
            return None
        path = quote(str(Path(database).resolve()))
        return create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, poolclass=NullPool)


@contextlib.contextmanager
def read_only_session(url: str) -> Iterator[Session | None]:
    """A session on the database at ``url`` that cannot write (None when there is no database).

    SQLite is opened read-only (a missing file stays missing); PostgreSQL reads in a read-only
    transaction, rolled back at the end.
    """
    engine = _engine(url)
    if engine is None:
        yield None
        return
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION READ ONLY"))
            try:
                yield Session(bind=conn)
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def read_stored(url: str) -> StoredIndex:
    """What the database at ``url`` stores, read-only; an empty index (with a reason) if none."""
    engine = _engine(url)
    if engine is None:
        return StoredIndex(reason="no database yet")
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION READ ONLY"))
            session = Session(bind=conn)
            history = stored_hashes(session, KINDS)
            latest = {pin: versions[-1][0] for pin, versions in history.items()}
            bodies = load_versions(session, latest)
            conn.rollback()
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        return StoredIndex(reason=f"database not readable ({str(cause).splitlines()[0][:200]})")
    finally:
        engine.dispose()
    retired = frozenset(pin for pin, stored in bodies.items() if is_tombstone(stored.body))
    return StoredIndex(history=history, retired=retired)


def preview_snapshot(
    files: FileKnowledge, stored: StoredIndex
) -> tuple[KnowledgeSnapshot, list[str]]:
    """A snapshot of the files, pinned as stored (or as they would be stored), with notes."""
    versions: dict[str, int] = {}
    notes: list[str] = []
    if stored.reason:
        notes.append(f"{stored.reason}: versions are those these files would be stored under")
    for pin, doc in sorted(files.documents.items()):
        if is_tombstone(doc.body):
            continue
        latest = stored.latest(pin)
        version = stored.version_of(pin, doc.content_hash)
        if version is None:
            version = latest + 1
            if not stored.reason:
                notes.append(
                    f"{pin}: not stored yet; a replica reading these files adds it as v{version}"
                )
        elif version != latest:
            notes.append(
                f"{pin}: these files hold v{version}; the database has v{latest}, which running "
                "replicas plan from"
            )
        versions[pin] = version
    for pin in sorted(stored.history.keys() - files.documents.keys() - stored.retired):
        notes.append(
            f"{pin}: in the database (v{stored.latest(pin)}) but not in these files; running "
            "replicas still plan with it"
        )
    snapshot = KnowledgeSnapshot(runbooks=files.runbooks, versions=versions, pack=files.pack)
    return snapshot, notes
