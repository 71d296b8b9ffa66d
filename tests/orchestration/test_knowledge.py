"""Durable knowledge: versioned documents, and replicas that plan from the database's versions
while watching their own files without flapping."""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import Session, select
from structlog.testing import capture_logs

from common import FakeClock
from orchestration.control import ControlPlane
from orchestration.db import Database
from orchestration.enums import VoteChoice
from orchestration.knowledge import (
    TOMBSTONE,
    Document,
    KnowledgeSnapshot,
    Published,
    latest_versions,
    load_versions,
    pin_key,
    pinned_versions,
    publish_documents,
    stale_pins,
)
from orchestration.knowledge import sync as sync_module
from orchestration.models import Knowledge, Plan
from orchestration.runbooks import scan_folder
from tests.orchestration.helpers import (
    APPROVER_A,
    APPROVER_B,
    REQUESTER,
    DemoService,
    make_config,
    make_control,
    write_runbook,
)

WEB = "runbook:web-restart"
DEFAULT_PACK = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.start()
    yield database
    await database.close()


def runbook_doc(key: str, **body: Any) -> Document:
    return Document("runbook", key, body or {"title": key}, source=f"{key}.yaml")


def publishing(clock: FakeClock, *docs: Document) -> Callable[[Session], dict[str, Any]]:
    def work(session: Session) -> dict[str, Any]:
        return publish_documents(session, list(docs), now=clock.now())

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


# --- the store -----------------------------------------------------------------------------


async def test_first_publish_stores_version_one_of_each_document(
    db: Database, clock: FakeClock
) -> None:
    results = await db.run(publishing(clock, runbook_doc("a"), runbook_doc("b")))
    assert {pin: (r.outcome, r.version) for pin, r in results.items()} == {
        "runbook:a": (Published.ADDED, 1),
        "runbook:b": (Published.ADDED, 1),
    }
    assert await db.run(rows_of("runbook", "a")) == [(1, {"title": "a"})]


async def test_same_content_keeps_the_version_and_adds_no_row(
    db: Database, clock: FakeClock
) -> None:
    await db.run(publishing(clock, runbook_doc("a", x=1, y=2)))
    same = Document("runbook", "a", {"y": 2, "x": 1})  # key order differs, same content
    result = (await db.run(publishing(clock, same)))["runbook:a"]
    assert (result.outcome, result.version) == (Published.CURRENT, 1)
    assert await db.run(rows_of("runbook", "a")) == [(1, {"x": 1, "y": 2})]


async def test_new_content_adds_the_next_version(db: Database, clock: FakeClock) -> None:
    for step in ("probe", "restart", "verify"):
        await db.run(publishing(clock, runbook_doc("a", step=step)))
    rows = await db.run(rows_of("runbook", "a"))
    assert [v for v, _ in rows] == [1, 2, 3]
    assert rows[-1][1] == {"step": "verify"}


async def test_content_stored_as_an_older_version_is_never_written_back(
    db: Database, clock: FakeClock
) -> None:
    await db.run(publishing(clock, runbook_doc("a", step="old")))
    await db.run(publishing(clock, runbook_doc("a", step="new")))
    result = (await db.run(publishing(clock, runbook_doc("a", step="old"))))["runbook:a"]
    assert (result.outcome, result.version, result.file_version) == (Published.BEHIND, 2, 1)
    assert [v for v, _ in await db.run(rows_of("runbook", "a"))] == [1, 2]


async def test_a_document_left_out_of_a_publish_is_not_deleted(
    db: Database, clock: FakeClock
) -> None:
    await db.run(publishing(clock, runbook_doc("a"), runbook_doc("kept")))
    await db.run(publishing(clock, runbook_doc("a")))
    assert await db.run(rows_of("runbook", "kept")) == [(1, {"title": "kept"})]


async def test_a_tombstone_retires_once_and_a_new_content_revives(
    db: Database, clock: FakeClock
) -> None:
    marker = Document("runbook", "a", TOMBSTONE | {"version": 1})
    await db.run(publishing(clock, runbook_doc("a")))
    assert (await db.run(publishing(clock, marker)))["runbook:a"].outcome is Published.ADDED
    # another marker for a retired runbook changes nothing
    again = Document("runbook", "a", TOMBSTONE | {"version": 7})
    assert (await db.run(publishing(clock, again)))["runbook:a"].outcome is Published.CURRENT
    await db.run(publishing(clock, runbook_doc("a", title="back")))
    # the old marker is an older version now: a stale copy of it does not retire the revival
    assert (await db.run(publishing(clock, marker)))["runbook:a"].outcome is Published.BEHIND
    rows = await db.run(rows_of("runbook", "a"))
    assert [body for _, body in rows] == [
        {"title": "a"},
        TOMBSTONE | {"version": 1},
        {"title": "back"},
    ]


async def test_a_marker_for_a_runbook_never_stored_adds_nothing(
    db: Database, clock: FakeClock
) -> None:
    marker = Document("runbook", "ghost", TOMBSTONE | {"version": 1})
    assert (await db.run(publishing(clock, marker)))["runbook:ghost"].version == 0
    assert await db.run(rows_of("runbook", "ghost")) == []


async def test_latest_versions_reports_each_documents_newest_version_and_filters_kinds(
    db: Database, clock: FakeClock
) -> None:
    await db.run(publishing(clock, runbook_doc("a"), runbook_doc("b")))
    await db.run(publishing(clock, runbook_doc("a", changed=True), runbook_doc("b")))
    await db.run(publishing(clock, Document("policy", "pack", {"rules": []})))
    assert await db.run(latest_versions) == {"runbook:a": 2, "runbook:b": 1, "policy:pack": 1}
    only_policies = await db.run(lambda s: latest_versions(s, ["policy"]))
    assert only_policies == {"policy:pack": 1}
    assert await db.run(lambda s: latest_versions(s, [])) == {}


async def test_load_versions_reads_exactly_the_asked_bodies(db: Database, clock: FakeClock) -> None:
    await db.run(publishing(clock, runbook_doc("a", n=1), runbook_doc("b")))
    await db.run(publishing(clock, runbook_doc("a", n=2)))
    got = await db.run(lambda s: load_versions(s, {"runbook:a": 1, "runbook:b": 1}))
    assert {pin: (v.version, dict(v.body)) for pin, v in got.items()} == {
        "runbook:a": (1, {"n": 1}),
        "runbook:b": (1, {"title": "b"}),
    }
    assert await db.run(lambda s: load_versions(s, {})) == {}


async def test_pinned_versions_reads_only_the_pinned_documents(
    db: Database, clock: FakeClock
) -> None:
    await db.run(publishing(clock, runbook_doc("a"), runbook_doc("b")))
    await db.run(publishing(clock, runbook_doc("a", title="changed"), runbook_doc("b")))
    pins = {"runbook:a": 1, "runbook:gone": 1}
    current = await db.run(lambda s: pinned_versions(s, pins))
    assert current == {"runbook:a": 2}
    assert stale_pins(pins, current) == ["runbook:a", "runbook:gone"]
    assert await db.run(lambda s: pinned_versions(s, [])) == {}


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


# --- retirement markers in a runbook folder -------------------------------------------------


def test_a_retirement_marker_is_read_apart_from_runbooks(tmp_path: Path) -> None:
    write_runbook(tmp_path, 9000)
    (tmp_path / "old.yaml").write_text("id: old\nversion: 2\nretired: true\nreason: replaced\n")
    scan = scan_folder(tmp_path)
    assert list(scan.runbooks) == ["web-restart"]
    assert scan.retired["old"].version == 2
    assert scan.problems == []


def test_a_marker_with_runbook_fields_is_a_problem_on_its_line(tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text("id: old\nversion: 1\nretired: true\nsteps: []\n")
    scan = scan_folder(tmp_path)
    assert scan.retired == {}
    assert [(p.line, p.where) for p in scan.problems] == [(4, "steps")]
    assert "a retirement marker holds only id, version" in scan.problems[0].message


def test_a_marker_and_a_runbook_with_the_same_id_is_a_problem(tmp_path: Path) -> None:
    write_runbook(tmp_path, 9000)
    (tmp_path / "z.yaml").write_text("id: web-restart\nversion: 2\nretired: true\n")
    scan = scan_folder(tmp_path)
    assert "web-restart" in scan.runbooks
    assert scan.retired == {}
    assert "used by another file" in scan.problems[0].message


# --- replicas on one database, each with its own folder ------------------------------------


@pytest.fixture
async def service() -> AsyncIterator[DemoService]:
    svc = await DemoService().start()
    yield svc
    await svc.stop()


class Replicas:
    """Two control planes on one database; replica ``a`` and ``b`` each have a folder."""

    def __init__(self, tmp: Path, port: int) -> None:
        self.tmp = tmp
        self.port = port
        self.planes: dict[str, ControlPlane] = {}

    def folder(self, name: str) -> Path:
        return self.tmp / f"runbooks-{name}"

    def runbook(self, name: str) -> Path:
        return self.folder(name) / "web-restart.yaml"

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.runbook(name)
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    async def start(self, db_url: str, clock: FakeClock, name: str, **config: Any) -> ControlPlane:
        if not self.folder(name).exists():
            write_runbook(self.folder(name), self.port)
        plane = await make_control(db_url, make_config(self.folder(name), **config), clock)
        self.planes[name] = plane
        return plane

    async def close(self) -> None:
        for plane in self.planes.values():
            await plane.close()


@pytest.fixture
async def replicas(tmp_path: Path, service: DemoService) -> AsyncIterator[Replicas]:
    made = Replicas(tmp_path, service.port)
    yield made
    await made.close()


async def pins_of(plane: ControlPlane, plan_id: str) -> dict[str, int]:
    plan = await plane.db.run(lambda s: s.get(Plan, plan_id))
    assert plan is not None
    return plan.knowledge_pins


async def versions_of(plane: ControlPlane, pin: str = WEB) -> list[int]:
    kind, key = pin.split(":", 1)
    return [v for v, _ in await plane.db.run(rows_of(kind, key))]


async def test_an_edit_on_one_replica_reaches_the_other_which_plans_from_it_and_runs(
    db_url: str, clock: FakeClock, replicas: Replicas, service: DemoService
) -> None:
    a = await replicas.start(db_url, clock, "a")
    b = await replicas.start(db_url, clock, "b")
    replicas.edit("a", "title: Probe {service} health", "title: Check {service} health")

    assert await a.refresh_knowledge()
    assert a.snapshot.versions[WEB] == 2
    assert a.knowledge.status().in_sync
    with capture_logs() as logs:
        assert await b.refresh_knowledge()
        assert not await b.refresh_knowledge()  # nothing new: no change, no second report
    assert b.snapshot.versions[WEB] == 2
    assert b.snapshot.runbooks["web-restart"].steps[0].title == "Check {service} health"
    status = b.knowledge.status()
    assert not status.in_sync
    assert status.differs == (WEB,)
    disagree = [entry for entry in logs if entry["event"] == "knowledge_files_disagree"]
    assert len(disagree) == 1
    assert disagree[0]["documents"] == [WEB]
    assert disagree[0]["details"][WEB] == "these files hold v1; the database has v2"

    opened = await b.open_incident(text="checkout-api is down", requester=REQUESTER)
    view = await b.plan_view(opened.plan_id)
    assert await pins_of(b, opened.plan_id) == {WEB: 2, "policy:pack": 1}
    assert view.status == "waiting"  # not stale: the probe ran, the restart waits for votes
    assert view.steps[0].title == "Check checkout-api health"
    assert view.steps[0].status == "succeeded"
    assert service.health_checks == 1
    await b.load_knowledge()  # B re-reads its files, as a restart does
    restarted = await make_control(db_url, make_config(replicas.folder("b")), clock)
    try:
        assert restarted.snapshot.versions[WEB] == 2
    finally:
        await restarted.close()
    assert await versions_of(b) == [1, 2]  # B never wrote its old content back


async def test_a_plan_made_before_the_change_is_stale_as_before(
    db_url: str, clock: FakeClock, replicas: Replicas, service: DemoService
) -> None:
    a = await replicas.start(db_url, clock, "a")
    b = await replicas.start(db_url, clock, "b")
    opened = await b.open_incident(text="checkout-api is down", requester=REQUESTER)
    trail = await b.audit_trail(opened.plan_id)
    nonce = next(e.nonce for e in trail if e.event == "approval_requested")
    assert nonce is not None
    replicas.edit("a", "Restart an unhealthy", "Restart a sick")
    await a.refresh_knowledge()
    await b.refresh_knowledge()
    await b.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    out = await b.vote(nonce=nonce, voter=APPROVER_B, choice=VoteChoice.APPROVE)
    assert not out.accepted
    assert (await b.plan_view(opened.plan_id)).status in ("stale", "halted")
    assert service.restarts == 0


async def test_a_plan_is_never_stale_at_birth_even_before_the_periodic_refresh(
    db_url: str, clock: FakeClock, replicas: Replicas
) -> None:
    a = await replicas.start(db_url, clock, "a")
    b = await replicas.start(db_url, clock, "b")
    replicas.edit("a", "title: Probe {service} health", "title: Check {service} health")
    await a.refresh_knowledge()
    assert b.snapshot.versions[WEB] == 1  # B has not refreshed yet
    opened = await b.open_incident(text="checkout-api is down", requester=REQUESTER)
    view = await b.plan_view(opened.plan_id)
    assert await pins_of(b, opened.plan_id) == {WEB: 2, "policy:pack": 1}
    assert view.steps[0].title == "Check checkout-api health"
    assert view.status == "waiting"


@pytest.fixture
def statements() -> Iterator[Callable[[Database], list[str]]]:
    """Record every SQL statement a database's engine sends."""
    seen: list[tuple[Any, Any]] = []

    def watch(database: Database) -> list[str]:
        sent: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            sent.append(" ".join(statement.split()))

        event.listen(database.engine, "before_cursor_execute", record)
        seen.append((database.engine, record))
        return sent

    yield watch
    for engine, record in seen:
        event.remove(engine, "before_cursor_execute", record)


async def test_a_refresh_that_finds_nothing_new_is_one_query_and_rebuilds_nothing(
    db_url: str,
    clock: FakeClock,
    replicas: Replicas,
    monkeypatch: pytest.MonkeyPatch,
    statements: Callable[[Database], list[str]],
) -> None:
    b = await replicas.start(db_url, clock, "b")
    before = b.snapshot
    parsed: list[Path] = []
    real_read = sync_module.read_files

    def counting_read(folder: Path, *args: Any, **kwargs: Any) -> Any:
        parsed.append(folder)
        return real_read(folder, *args, **kwargs)

    monkeypatch.setattr(sync_module, "read_files", counting_read)
    sent = statements(b.db)
    assert not await b.refresh_knowledge()
    queries = [s for s in sent if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))]
    assert len(queries) == 1, queries
    assert "max(knowledge.version)" in queries[0]
    assert "GROUP BY" in queries[0]
    assert parsed == []  # the files' bytes were hashed, not parsed
    assert b.snapshot is before


async def test_older_content_never_flaps_and_the_last_edit_wins(
    db_url: str, clock: FakeClock, replicas: Replicas
) -> None:
    a = await replicas.start(db_url, clock, "a")
    b = await replicas.start(db_url, clock, "b")
    replicas.edit("a", "Restart an unhealthy", "Restart a sick")
    await a.refresh_knowledge()
    for _ in range(3):
        await b.refresh_knowledge()
        await b.load_knowledge()  # even re-reading its files, B does not write them back
        await a.refresh_knowledge()
    assert await versions_of(a) == [1, 2]

    replicas.edit("b", "Restart an unhealthy", "Restart a broken")  # a new edit, on B
    await b.refresh_knowledge()
    await a.refresh_knowledge()
    assert await versions_of(a) == [1, 2, 3]
    assert a.snapshot.runbooks["web-restart"].title == "Restart a broken web service"
    assert a.knowledge.status().differs == (WEB,)
    assert b.knowledge.status().in_sync

    replicas.runbook("a").write_text(replicas.runbook("b").read_text())  # A catches up
    with capture_logs() as logs:
        await a.refresh_knowledge()
    assert a.knowledge.status().in_sync
    assert "knowledge_files_agree" in [entry["event"] for entry in logs]
    assert await versions_of(a) == [1, 2, 3]


async def test_a_replica_whose_folder_lacks_a_runbook_keeps_it_for_everyone(
    db_url: str, clock: FakeClock, replicas: Replicas
) -> None:
    a = await replicas.start(db_url, clock, "a")
    replicas.folder("b").mkdir()
    b = await replicas.start(db_url, clock, "b")  # an empty folder, at start
    assert "web-restart" in b.snapshot.runbooks
    assert b.matches("checkout-api is down")
    assert b.knowledge.differences() == {WEB: "missing from these files; the database has v1"}

    replicas.runbook("a").unlink()  # removed while running: still not a deletion
    await a.refresh_knowledge()
    await b.refresh_knowledge()
    assert await versions_of(a) == [1]
    assert "web-restart" in a.snapshot.runbooks
    assert a.knowledge.status().differs == (WEB,)


async def test_a_retirement_marker_retires_the_runbook_on_every_replica(
    db_url: str, clock: FakeClock, replicas: Replicas
) -> None:
    a = await replicas.start(db_url, clock, "a")
    b = await replicas.start(db_url, clock, "b")
    replicas.runbook("a").write_text("id: web-restart\nversion: 1\nretired: true\n")
    await a.refresh_knowledge()
    await b.refresh_knowledge()
    assert await versions_of(a) == [1, 2]
    assert not b.matches("checkout-api is down")
    assert "web-restart" not in b.snapshot.runbooks
    assert a.knowledge.status().in_sync
    assert b.knowledge.differences() == {
        WEB: "retired in the database (v2); these files still hold it"
    }
    await b.refresh_knowledge()
    await a.refresh_knowledge()
    assert await versions_of(a) == [1, 2]  # B's live copy is older: not revived

    replicas.runbook("b").unlink()  # B's folder catches up by dropping the file
    await b.refresh_knowledge()
    assert b.knowledge.status().in_sync


async def test_a_broken_runbook_file_is_reported_and_never_replaces_the_good_version(
    db_url: str, clock: FakeClock, replicas: Replicas
) -> None:
    a = await replicas.start(db_url, clock, "a")
    replicas.edit("a", "risk: high", "risk: extreme")
    with capture_logs() as logs:
        problems = await a.load_knowledge()
        await a.refresh_knowledge()
    assert len(problems) == 1
    assert ":18: steps[1].risk" in str(problems[0])
    assert [e["event"] for e in logs].count("runbook_problem") == 1  # once per change
    assert await versions_of(a) == [1]
    assert a.matches("checkout-api is down")
    assert a.knowledge.status().problems == (str(problems[0]),)
    assert a.knowledge.status().differs == (WEB,)


PACK_ONE_APPROVER = """
version: 1
approval:
  low: {quorum: 0}
  medium: {quorum: 1}
  high: {quorum: 1, exclude_requester: true}
  critical: {deny: true}
"""


async def test_a_policy_pack_edit_reaches_the_other_replica_and_decides_its_steps(
    db_url: str, clock: FakeClock, replicas: Replicas, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        (tmp_path / f"pack-{name}.yaml").write_text(DEFAULT_PACK.read_text())
    a = await replicas.start(db_url, clock, "a", policies=str(tmp_path / "pack-a.yaml"))
    b = await replicas.start(db_url, clock, "b", policies=str(tmp_path / "pack-b.yaml"))
    before = b.preview("checkout-api is down", requester=REQUESTER)
    assert before.steps[1].code == "needs_two_approvals"
    assert before.knowledge_pins["policy:pack"] == 1

    (tmp_path / "pack-a.yaml").write_text(PACK_ONE_APPROVER)
    await a.refresh_knowledge()
    await b.refresh_knowledge()
    after = b.preview("checkout-api is down", requester=REQUESTER)
    assert after.knowledge_pins["policy:pack"] == 2
    assert after.steps[1].code == "needs_one_approval"
    assert b.knowledge.status().differs == ("policy:pack",)
    assert await versions_of(b, "policy:pack") == [1, 2]


async def test_replicas_publishing_the_same_edit_at_once_store_it_once(
    db_url: str, clock: FakeClock, replicas: Replicas
) -> None:
    a = await replicas.start(db_url, clock, "a")
    b = await replicas.start(db_url, clock, "b")
    replicas.edit("a", "Restart an unhealthy", "Restart a sick")
    replicas.runbook("b").write_text(replicas.runbook("a").read_text())
    await asyncio.gather(a.refresh_knowledge(), b.refresh_knowledge())
    assert await versions_of(a) == [1, 2]
    assert a.snapshot.versions[WEB] == b.snapshot.versions[WEB] == 2
    assert a.knowledge.status().in_sync
    assert b.knowledge.status().in_sync


async def test_the_refresh_loop_follows_edits_and_survives_a_failing_round(
    db_url: str,
    clock: FakeClock,
    replicas: Replicas,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = await replicas.start(db_url, clock, "a", knowledge={"refresh_s": 0.05})
    b = await replicas.start(db_url, clock, "b", knowledge={"refresh_s": 0.05})
    real = b.knowledge.refresh
    failures = [RuntimeError("database went away")]

    async def flaky(*, rescan: bool = False) -> bool:
        if failures:
            raise failures.pop()
        return await real(rescan=rescan)

    monkeypatch.setattr(b.knowledge, "refresh", flaky)
    with capture_logs() as logs:
        loops = [
            asyncio.create_task(a.knowledge.run_forever()),
            asyncio.create_task(b.knowledge.run_forever()),
        ]
        try:
            replicas.edit("a", "Restart an unhealthy", "Restart a sick")
            deadline = asyncio.get_running_loop().time() + 20
            while b.snapshot.versions.get(WEB) != 2:
                assert asyncio.get_running_loop().time() < deadline, "never propagated"
                await asyncio.sleep(0.02)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
    events = [entry["event"] for entry in logs]
    assert "knowledge_refresh_failed" in events
    assert "knowledge_refresh_recovered" in events
    assert b.snapshot.runbooks["web-restart"].title == "Restart a sick web service"


def test_a_config_refresh_period_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="refresh_s"):
        make_config(Path("rb"), knowledge={"refresh_s": 0})


def test_the_default_refresh_period_keeps_two_hops_under_ten_seconds() -> None:
    assert 2 * make_config(Path("rb")).knowledge.refresh_s < 10
