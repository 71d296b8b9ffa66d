"""This replica's knowledge files: its runbook folder and its policy pack file.

Reading them is split in two so a periodic check stays cheap: :func:`fingerprint` hashes the
raw bytes (no parsing), and only a changed fingerprint is worth :func:`read_files`.
"""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from common.yamlsrc import Problem
from orchestration.knowledge.store import TOMBSTONE, Document
from orchestration.runbooks import RetiredRunbook, Runbook, runbook_files, scan_folder
from policies import Pack, PackError, check_pack_text, load_pack_text

BUILTIN_PACK_SOURCE = "(built-in policy pack)"


@dataclass(frozen=True)
class FileKnowledge:
    """What this replica's files hold, parsed; ``documents`` maps ``kind:key`` to a document."""

    documents: dict[str, Document] = field(default_factory=dict)
    runbooks: dict[str, Runbook] = field(default_factory=dict)
    pack: Pack | None = None  # None when the pack file has problems
    problems: list[Problem] = field(default_factory=list)


def runbook_document(runbook: Runbook, source: str = "") -> Document:
    """The stored form of a runbook."""
    # ``research`` is stored only when set: runbooks without it keep the body (and version) they
    # had before the field existed.
    body = runbook.model_dump(mode="json", exclude=set() if runbook.research else {"research"})
    return Document("runbook", runbook.id, body, source=source)


def retired_document(marker: RetiredRunbook, source: str = "") -> Document:
    """The stored form of a retirement marker: a tombstone that names the marker's version."""
    body = TOMBSTONE | {"version": marker.version}
    if marker.reason:
        body["reason"] = marker.reason
    return Document("runbook", marker.id, body, source=source)


def pack_document(pack: Pack, source: str = "") -> Document:
    """The stored form of the policy pack."""
    return Document("policy", "pack", pack.model_dump(mode="json"), source=source)


def pack_problems(errors: list[PackError], source: str) -> list[Problem]:
    """Policy pack errors as problems with file and line."""
    return [
        Problem(e.path or source, e.line, getattr(e, "location", "") or "pack", e.message)
        for e in errors
    ]


def read_pack(path: Path) -> tuple[Pack | None, list[Problem]]:
    """The pack in ``path`` and its problems (the pack is None when there is any)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [Problem(str(path), None, "pack", f"cannot read the file ({reason})")]
    errors = check_pack_text(text, source=str(path))
    if errors:
        return None, pack_problems(errors, str(path))
    return load_pack_text(text, source=str(path)), []


def fingerprint(runbooks: Path, policies: Path | None) -> str:
    """A hash of every runbook file's name and bytes and of the pack file: cheap, no parsing."""
    digest = hashlib.sha256()
    paths = runbook_files(runbooks) if runbooks.is_dir() else []
    digest.update(b"folder" if runbooks.is_dir() else b"no folder")
    for path in [*paths, *([policies] if policies is not None else [])]:
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:  # vanished or unreadable: reading it reports the problem
            digest.update(f"unreadable {exc.errno}".encode())
    return digest.hexdigest()


def read_files(runbooks: Path, policies: Path | None, *, builtin_pack: Pack) -> FileKnowledge:
    """Parse the runbook folder and the pack file (``builtin_pack`` when none is configured)."""
    scan = scan_folder(runbooks)
    documents = {
        doc.pin: doc
        for doc in [
            *(runbook_document(rb, scan.sources[rb.id]) for rb in scan.runbooks.values()),
            *(retired_document(m, scan.sources[m.id]) for m in scan.retired.values()),
        ]
    }
    problems = list(scan.problems)
    if policies is None:
        pack: Pack | None = builtin_pack
        source = BUILTIN_PACK_SOURCE
    else:
        pack, found = read_pack(policies)
        problems += found
        source = str(policies)
    if pack is not None:
        doc = pack_document(pack, source)
        documents[doc.pin] = doc
    return FileKnowledge(
        documents=documents, runbooks=dict(scan.runbooks), pack=pack, problems=problems
    )
