"""Durable knowledge: versioned runbooks and policy pack, shared by every replica.

The database holds the current version of each document; every replica plans from it.
- :mod:`~orchestration.knowledge.store`: versioned documents in the ``knowledge`` table
  (:func:`publish_documents`, :func:`latest_versions`, :func:`pinned_versions`,
  :func:`stale_pins`, :func:`behind`, :func:`load_versions`).
- :mod:`~orchestration.knowledge.current`: :class:`CurrentVersions`, the in-memory latest
  versions the per-step freshness check reads (revalidated by :func:`row_count`).
- :mod:`~orchestration.knowledge.snapshot`: :class:`KnowledgeSnapshot`, what the Planner reads.
- :mod:`~orchestration.knowledge.files`: this replica's runbook folder and pack file
  (:func:`read_files`, :func:`fingerprint`, :func:`read_pack`).
- :mod:`~orchestration.knowledge.sync`: :class:`KnowledgeSync`, the periodic refresh that
  publishes new file contents and follows the database (rules in its docstring).
- :mod:`~orchestration.knowledge.readonly`: :func:`read_stored` and :func:`preview_snapshot`,
  for previews that write nothing.
"""

from orchestration.knowledge.current import CurrentVersions, row_count
from orchestration.knowledge.files import FileKnowledge, read_files, read_pack
from orchestration.knowledge.readonly import StoredIndex, preview_snapshot, read_stored
from orchestration.knowledge.snapshot import KnowledgeSnapshot
from orchestration.knowledge.store import (
    TOMBSTONE,
    Document,
    Published,
    PublishResult,
    behind,
    is_tombstone,
    latest_versions,
    load_versions,
    pin_key,
    pinned_versions,
    publish_documents,
    stale_pins,
)
from orchestration.knowledge.sync import KnowledgeSync, SyncStatus

__all__ = [
    "TOMBSTONE",
    "CurrentVersions",
    "Document",
    "FileKnowledge",
    "KnowledgeSnapshot",
    "KnowledgeSync",
    "PublishResult",
    "Published",
    "StoredIndex",
    "SyncStatus",
    "behind",
    "is_tombstone",
    "latest_versions",
    "load_versions",
    "pin_key",
    "pinned_versions",
    "preview_snapshot",
    "publish_documents",
    "read_files",
    "read_pack",
    "read_stored",
    "row_count",
    "stale_pins",
]
