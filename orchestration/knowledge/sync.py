"""One replica's knowledge: plan from the database's latest versions, watch this replica's files.

Every ``refresh_s`` seconds :meth:`KnowledgeSync.refresh` does two cheap things:

1. Files: hash the runbook folder and the pack file (bytes only). Unchanged: nothing more.
   Changed: parse them and publish what is new - a content never stored under its key becomes
   the next version (an edit or a deploy). Content the database holds as an *older* version is
   never written back (these files are behind, or were rolled back), and nothing is deleted
   because a file is missing: a replica with an incomplete folder cannot remove a runbook for
   everyone. A runbook is retired only by a marker file (``id``, ``version``, ``retired: true``).
   A file with problems is reported and never replaces a good version.
2. Database: one grouped query for the latest version of every runbook and policy document.
   Unchanged: nothing more. Changed: load the bodies of the changed versions and build a new
   snapshot from them, so the pins a plan gets are the versions of the bodies it was built from.

Where this replica's files and the database disagree, the replica plans from the database
and says so once per change (``knowledge_files_disagree``) and in :meth:`KnowledgeSync.status`.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from common import Clock
from orchestration.db import Database
from orchestration.knowledge.files import FileKnowledge, fingerprint, read_files
from orchestration.knowledge.snapshot import KnowledgeSnapshot
from orchestration.knowledge.store import (
    PublishResult,
    StoredVersion,
    is_tombstone,
    latest_versions,
    load_versions,
    publish_documents,
    split_pin,
)
from orchestration.runbooks import Runbook
from orchestration.telemetry import get_logger
from policies import Pack

log = get_logger("opsgate.knowledge")

KINDS = ("runbook", "policy")
PUBLISH_ATTEMPTS = 3  # replicas publishing the same edit at once: the loser re-reads and agrees


@dataclass(frozen=True)
class Latest:
    """The stored latest version of one document, as this replica last read it."""

    version: int
    content_hash: str
    retired: bool


@dataclass(frozen=True)
class SyncStatus:
    """Whether this replica's files agree with the database, for ``GET /readyz``."""

    differs: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    versions: Mapping[str, int] = field(default_factory=dict)
    refreshed_at: datetime | None = None

    @property
    def in_sync(self) -> bool:
        """True when the files hold exactly the database's latest versions."""
        return not self.differs

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "in_sync": self.in_sync,
            "differs": list(self.differs),
            "problems": list(self.problems),
            "versions": dict(sorted(self.versions.items())),
            "refreshed_at": self.refreshed_at.isoformat() if self.refreshed_at else None,
        }


class KnowledgeSync:
    """The snapshot the Planner reads, kept equal to the database's latest versions."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        runbooks: Path,
        policies: Path | None,
        builtin_pack: Pack,
        refresh_s: float,
        on_change: Callable[[KnowledgeSnapshot], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.clock = clock
        self.runbooks = runbooks
        self.policies = policies
        self.builtin_pack = builtin_pack
        self.refresh_s = refresh_s
        self.snapshot = KnowledgeSnapshot(runbooks={}, pack=builtin_pack)
        self._on_change = on_change
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._files = FileKnowledge()
        self._file_versions: dict[str, int] = {}  # pin -> stored version with the file's content
        self._published: str | None = None  # fingerprint of the files last published
        self._latest: dict[str, Latest] = {}
        self._seen: dict[str, int] | None = None  # latest versions the snapshot was built for
        self._refreshed_at: datetime | None = None
        self._reported: tuple[str, ...] = ()
        self._reported_problems: tuple[str, ...] = ()
        self._failing = False

    # --- the loop ----------------------------------------------------------------------

    async def refresh(self, *, rescan: bool = False) -> bool:
        """Publish what is new in the files, then follow the database; True if plans change.

        ``rescan`` parses the files even when their bytes did not change.
        """
        async with self._lock:
            await self._publish_files(rescan=rescan)
            changed = await self._follow_database()
            self._refreshed_at = self.clock.now()
            self._report()
            if changed and self._on_change is not None:
                self._on_change(self.snapshot)
        return changed

    async def run_forever(self) -> None:
        """Refresh every ``refresh_s`` seconds until cancelled; failures are logged, not fatal."""
        while True:
            await self._sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception as exc:  # a database outage must not end the loop
                if not self._failing:
                    log.warning(
                        "knowledge_refresh_failed",
                        error_type=type(exc).__name__,
                        error=str(exc)[:300],
                    )
                self._failing = True
            else:
                if self._failing:
                    log.info("knowledge_refresh_recovered")
                self._failing = False

    @property
    def files(self) -> FileKnowledge:
        """This replica's files as last read (and published)."""
        return self._files

    def status(self) -> SyncStatus:
        """Agreement of this replica's files with the database, as of the last refresh."""
        return SyncStatus(
            differs=self._reported,
            problems=self._reported_problems,
            versions=dict(self.snapshot.versions),
            refreshed_at=self._refreshed_at,
        )

    # --- files -------------------------------------------------------------------------

    async def _publish_files(self, *, rescan: bool) -> None:
        current = await asyncio.to_thread(fingerprint, self.runbooks, self.policies)
        if current == self._published and not rescan:
            return
        files = await asyncio.to_thread(
            read_files, self.runbooks, self.policies, builtin_pack=self.builtin_pack
        )
        problems = tuple(str(p) for p in files.problems)
        if problems != self._reported_problems:
            for problem in problems:
                log.warning("runbook_problem", problem=problem)
            self._reported_problems = problems
        results = await self._publish(files)
        added = {pin: r.version for pin, r in results.items() if r.version and r.added}
        if added:
            log.info(
                "knowledge_published",
                documents=added,
                sources={pin: files.documents[pin].source for pin in added},
            )
        self._files = files
        self._file_versions = {pin: r.file_version for pin, r in results.items() if r.file_version}
        self._published = current

    async def _publish(self, files: FileKnowledge) -> dict[str, PublishResult]:
        docs = list(files.documents.values())
        now = self.clock.now()

        def work(session: Session) -> dict[str, PublishResult]:
            return publish_documents(session, docs, now=now)

        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                return await self.db.run(work)
            except IntegrityError:
                # Another replica stored the same next version first; read again and agree.
                if attempt == PUBLISH_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    # --- database ----------------------------------------------------------------------

    async def _follow_database(self) -> bool:
        seen = self._seen
        known = dict(self.snapshot.versions)

        def work(session: Session) -> tuple[dict[str, int], dict[str, StoredVersion]]:
            latest = latest_versions(session, KINDS)
            if latest == seen:
                return latest, {}
            wanted = {pin: v for pin, v in latest.items() if known.get(pin) != v}
            return latest, load_versions(session, wanted)

        latest, bodies = await self.db.run(work)
        if latest == seen:
            return False
        self._seen = latest
        snapshot = self._build(latest, bodies)
        changed = snapshot.versions != self.snapshot.versions or snapshot.pack != self.snapshot.pack
        if changed:
            log.info(
                "knowledge_refreshed",
                versions=dict(sorted(snapshot.versions.items())),
                changed=sorted(
                    pin
                    for pin in snapshot.versions.keys() | self.snapshot.versions.keys()
                    if snapshot.versions.get(pin) != self.snapshot.versions.get(pin)
                ),
            )
        self.snapshot = snapshot
        return changed

    def _build(
        self, latest: Mapping[str, int], bodies: Mapping[str, StoredVersion]
    ) -> KnowledgeSnapshot:
        """A snapshot of ``latest``: unchanged versions reused, changed ones parsed."""
        old = self.snapshot
        runbooks: dict[str, Runbook] = {}
        versions: dict[str, int] = {}
        pack = old.pack
        for pin, version in sorted(latest.items()):
            kind, key = split_pin(pin)
            stored = bodies.get(pin)
            if stored is None:  # the version this snapshot already holds
                if old.versions.get(pin) != version:
                    continue  # could not be parsed before either
                versions[pin] = version
                if kind == "runbook" and key in old.runbooks:
                    runbooks[key] = old.runbooks[key]
                continue
            retired = is_tombstone(stored.body)
            self._latest[pin] = Latest(version, stored.content_hash, retired)
            try:
                if kind == "runbook" and not retired:
                    runbooks[key] = Runbook.model_validate(stored.body)
                elif kind == "policy" and key == "pack":
                    pack = Pack.model_validate(stored.body)
            except ValidationError as exc:
                # Written by another opsgate release, perhaps: plan nothing from it.
                log.error(
                    "knowledge_body_invalid", document=pin, version=version, error=str(exc)[:300]
                )
                if kind == "policy" and pin in old.versions:
                    versions[pin] = old.versions[pin]  # the pack in use stays pinned as it is
                continue
            versions[pin] = version
        for pin in list(self._latest):
            if pin not in latest:
                del self._latest[pin]
        return KnowledgeSnapshot(runbooks=runbooks, versions=versions, pack=pack)

    # --- agreement ---------------------------------------------------------------------

    def differences(self) -> dict[str, str]:
        """Documents where this replica's files and the database's latest version differ."""
        out: dict[str, str] = {}
        files = self._files.documents
        for pin in sorted(files.keys() | self._latest.keys()):
            doc = files.get(pin)
            stored = self._latest.get(pin)
            file_gone = doc is None or is_tombstone(doc.body)
            stored_gone = stored is None or stored.retired
            if file_gone and stored_gone:
                continue
            if doc is not None and stored is not None and doc.content_hash == stored.content_hash:
                continue
            if stored is None:
                out[pin] = "not stored yet"
            elif stored.retired:
                out[pin] = f"retired in the database (v{stored.version}); these files still hold it"
            elif doc is None:
                out[pin] = f"missing from these files; the database has v{stored.version}"
            elif is_tombstone(doc.body):
                out[pin] = f"retired here; the database has v{stored.version} (a newer version)"
            else:
                held = self._file_versions.get(pin)
                out[pin] = f"these files hold v{held}; the database has v{stored.version}"
        return out

    def _report(self) -> None:
        details = self.differences()
        differs = tuple(details)
        if differs == self._reported:
            return
        if differs:
            log.warning(
                "knowledge_files_disagree",
                documents=list(differs),
                details=details,
                runbooks=str(self.runbooks),
                policies=str(self.policies) if self.policies else None,
                using="database",
            )
        else:
            log.info("knowledge_files_agree")
        self._reported = differs
