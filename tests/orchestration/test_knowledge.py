"""Durable knowledge: versioned documents, tombstones, latest versions and stale pins."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlmodel import Session, select

from common import FakeClock
from orchestration.db import Database
from orchestration.knowledge import (
    TOMBSTONE,
    Document,
    KnowledgeSnapshot,
    latest_versions,
    pin_key,
    pinned_versions,
    stale_pins,
    sync_documents,
)
from orchestration.models import Knowledge


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.start()
    yield database
    await database.close()


def runbook_doc(key: str, **body: Any) -> Document:
    return Document("runbook", key, body or {"title": key}, source=f"{key}.yaml")


def syncing(clock: FakeClock, kind: str, *docs: Document) -> Callable[[Session], dict[str, int]]:
    def work(session: Session) -> dict[str, int]:
        return sync_documents(session, kind=kind, documents=list(docs), now=clock.now())

    return work


def rows_of(kind: str, key: str) -> Callable[[Session], list[tuple[int, dict[str, Any]]]]:
    def work(session: Session) -> list[tuple[int, dict[str, Any]]]:
        query = (
            select(Knowledge)
            .where(Knowledge.kind == kind, Knowledge.key == key)
            .order_by(Knowledge.version)  # type: ignore[arg-type]
        )
        return [(row.version, row.body) for row in session.exec(query)]

    return work


async def test_first_sync_stores_version_one_of_each_document(
    db: Database, clock: FakeClock
) -> None:
    versions = await db.run(syncing(clock, "runbook", runbook_doc("a"), runbook_doc("b")))
    assert versions == {"runbook:a": 1, "runbook:b": 1}
    assert await db.run(rows_of("runbook", "a")) == [(1, {"title": "a"})]


async def test_same_content_keeps_the_version_and_adds_no_row(
    db: Database, clock: FakeClock
) -> None:
    await db.run(syncing(clock, "runbook", runbook_doc("a", x=1, y=2)))
    clock.advance(60)
    # key order differs, canonical content is the same
    same = Document("runbook", "a", {"y": 2, "x": 1})
    assert await db.run(syncing(clock, "runbook", same)) == {"runbook:a": 1}
    assert await db.run(rows_of("runbook", "a")) == [(1, {"x": 1, "y": 2})]


async def test_changed_content_adds_the_next_version(db: Database, clock: FakeClock) -> None:
    await db.run(syncing(clock, "runbook", runbook_doc("a", step="probe")))
    assert await db.run(syncing(clock, "runbook", runbook_doc("a", step="restart"))) == {
        "runbook:a": 2
    }
    assert await db.run(syncing(clock, "runbook", runbook_doc("a", step="verify"))) == {
        "runbook:a": 3
    }
    rows = await db.run(rows_of("runbook", "a"))
    assert [v for v, _ in rows] == [1, 2, 3]
    assert rows[-1][1] == {"step": "verify"}


async def test_removed_document_gets_one_tombstone_version(db: Database, clock: FakeClock) -> None:
    await db.run(syncing(clock, "runbook", runbook_doc("a"), runbook_doc("gone")))
    versions = await db.run(syncing(clock, "runbook", runbook_doc("a")))
    assert versions == {"runbook:a": 1}
    assert await db.run(rows_of("runbook", "gone")) == [(1, {"title": "gone"}), (2, TOMBSTONE)]
    # syncing again without it does not stack tombstones
    await db.run(syncing(clock, "runbook", runbook_doc("a")))
    assert len(await db.run(rows_of("runbook", "gone"))) == 2


async def test_document_that_comes_back_after_a_tombstone_gets_a_new_version(
    db: Database, clock: FakeClock
) -> None:
    await db.run(syncing(clock, "runbook", runbook_doc("a")))
    await db.run(syncing(clock, "runbook"))
    assert await db.run(syncing(clock, "runbook", runbook_doc("a"))) == {"runbook:a": 3}


async def test_sync_of_one_kind_does_not_tombstone_other_kinds(
    db: Database, clock: FakeClock
) -> None:
    await db.run(syncing(clock, "policy", Document("policy", "pack", {"rules": []})))
    await db.run(syncing(clock, "runbook", runbook_doc("a")))
    await db.run(syncing(clock, "runbook"))
    assert await db.run(rows_of("policy", "pack")) == [(1, {"rules": []})]


async def test_latest_versions_reports_each_documents_newest_version_and_filters_kinds(
    db: Database, clock: FakeClock
) -> None:
    await db.run(syncing(clock, "runbook", runbook_doc("a"), runbook_doc("b")))
    await db.run(syncing(clock, "runbook", runbook_doc("a", changed=True), runbook_doc("b")))
    await db.run(syncing(clock, "policy", Document("policy", "pack", {"rules": []})))
    assert await db.run(latest_versions) == {"runbook:a": 2, "runbook:b": 1, "policy:pack": 1}
    only_policies = await db.run(lambda s: latest_versions(s, ["policy"]))
    assert only_policies == {"policy:pack": 1}
    assert await db.run(lambda s: latest_versions(s, [])) == {}


async def test_latest_version_of_a_deleted_document_is_its_tombstone(
    db: Database, clock: FakeClock
) -> None:
    await db.run(syncing(clock, "runbook", runbook_doc("a")))
    await db.run(syncing(clock, "runbook"))
    assert await db.run(latest_versions) == {"runbook:a": 2}


async def test_pins_become_stale_when_a_document_changes_or_is_deleted(
    db: Database, clock: FakeClock
) -> None:
    pins = await db.run(
        syncing(clock, "runbook", runbook_doc("kept"), runbook_doc("edited"), runbook_doc("gone"))
    )
    assert stale_pins(pins, await db.run(latest_versions)) == []
    await db.run(syncing(clock, "runbook", runbook_doc("kept"), runbook_doc("edited", new=1)))
    assert stale_pins(pins, await db.run(latest_versions)) == ["runbook:edited", "runbook:gone"]


def test_stale_pins_counts_a_pin_missing_from_the_current_versions_as_stale() -> None:
    assert stale_pins({"runbook:b": 1, "runbook:a": 1}, {}) == ["runbook:a", "runbook:b"]
    assert stale_pins({"runbook:a": 2}, {"runbook:a": 2, "runbook:x": 9}) == []


def test_content_hash_is_independent_of_key_order_and_source() -> None:
    one = Document("runbook", "a", {"a": 1, "b": [1, 2]}, source="one.yaml")
    two = Document("runbook", "a", {"b": [1, 2], "a": 1}, source="two.yaml")
    assert one.content_hash == two.content_hash
    assert one.content_hash != Document("runbook", "a", {"a": 1, "b": [2, 1]}).content_hash


def test_snapshot_pins_the_runbook_and_every_policy_document_only() -> None:
    snapshot = KnowledgeSnapshot(
        runbooks={},
        versions={
            "runbook:a": 3,
            "runbook:b": 5,
            "policy:pack": 2,
            "policy:extra": 1,
            "fact:x": 4,
        },
    )
    assert snapshot.pins_for("a") == {"runbook:a": 3, "policy:extra": 1, "policy:pack": 2}
    assert snapshot.pins_for("unknown") == {"policy:extra": 1, "policy:pack": 2}
    assert pin_key("runbook", "a") == "runbook:a"


async def test_pinned_versions_reads_only_the_pinned_documents(
    db: Database, clock: FakeClock
) -> None:
    await db.run(syncing(clock, "runbook", runbook_doc("a"), runbook_doc("b")))
    await db.run(syncing(clock, "runbook", runbook_doc("a", title="changed"), runbook_doc("b")))
    pins = {"runbook:a": 1, "runbook:gone": 1}
    current = await db.run(lambda s: pinned_versions(s, pins))
    assert current == {"runbook:a": 2}
    assert stale_pins(pins, current) == ["runbook:a", "runbook:gone"]
    assert await db.run(lambda s: pinned_versions(s, [])) == {}
