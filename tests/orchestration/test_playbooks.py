"""Recovery playbooks: loading and validation with lines, selection, and each failure mode
applying its playbook inside the unit of work that decides the failure."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from adapters import GrantSigner, ToolCall, ToolFailed, ToolResult
from adapters.errors import ErrorCode, GrantError
from adapters.testing import FakeTool, ok_result
from common import FakeClock
from orchestration.checks import check_all, check_playbooks
from orchestration.config import OpsgateConfig
from orchestration.control import ControlPlane
from orchestration.db import Database
from orchestration.enums import VoteChoice
from orchestration.models import AuditEvent, Knowledge, OutboxMessage, Plan, Step
from orchestration.recovery import (
    FailureMode,
    Playbook,
    load_playbooks,
    select_playbook,
)
from orchestration.recovery.playbooks import ambiguous, globs_overlap, runbook_params
from orchestration.runbooks import load_folder
from orchestration.toolbox import build_registry
from policies import default_pack
from tests.orchestration.fakeplans import control_with, pending_nonce, steps_yaml
from tests.orchestration.helpers import APPROVER_A, REQUESTER, make_config
from tests.orchestration.test_recovery import LEASE_S, HeldTool, die, two_replicas

REPO = Path(__file__).resolve().parents[2]

SERVICE_RUNBOOK = """
id: svc-fix
version: 1
title: Fix a wobbling service
match:
  patterns: ['(?P<service>[a-z][a-z0-9-]{1,40}) wobbles']
steps:
STEPS
"""

FLAKY = """
id: flaky
version: 3
title: The fake tool keeps failing
failure_mode: tool_flaky
steps:
  - id: probe
    title: Probe {service} after {step_title}
    tool: fake.read
    args: {probe: "{service}"}
    risk: low
manual:
  - "'{step_title}' ({tool_action}) on {service} failed: {error_code}: {error}"
  - "Check {service} by hand."
"""


# --- helpers ------------------------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


def playbook(**fields: Any) -> str:
    """A playbook's YAML: defaults for the required keys, ``fields`` (already YAML) on top."""
    base = {
        "id": "pb",
        "version": "1",
        "title": "A playbook",
        "failure_mode": "tool_flaky",
        "manual": '["Look at {tool_action}."]',
    }
    base.update(fields)
    return "\n".join(f"{key}: {value}" for key, value in base.items() if value is not None)


async def plane(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeTool,
    *steps: dict[str, Any],
    playbooks: dict[str, str],
    **config: Any,
) -> ControlPlane:
    """A control plane over ``fake`` with the svc-fix runbook and ``playbooks`` in recovery/."""
    for name, text in playbooks.items():
        write(tmp_path / "rb" / "recovery", name, text)
    write(tmp_path / "rb", "svc", SERVICE_RUNBOOK.replace("STEPS", steps_yaml(*steps)))
    return await control_with(db_url, tmp_path, clock, fake, *steps, **config)


async def rows(cp: ControlPlane, model: Any, *where: Any) -> list[Any]:
    return await cp.db.run(lambda s: list(s.exec(select(model).where(*where))))


async def applied(cp: ControlPlane) -> list[AuditEvent]:
    return await rows(cp, AuditEvent, AuditEvent.event == "playbook_applied")


async def messages(cp: ControlPlane) -> list[dict[str, Any]]:
    found = await rows(cp, OutboxMessage, OutboxMessage.kind == "recovery_playbook")
    return [m.payload for m in found]


async def plans_of(cp: ControlPlane, incident_id: str) -> list[Plan]:
    return await cp.db.run(
        lambda s: list(
            s.exec(select(Plan).where(Plan.incident_id == incident_id).order_by(col(Plan.version)))
        )
    )


async def steps_of(cp: ControlPlane, plan_id: str) -> list[Step]:
    return await cp.db.run(
        lambda s: list(
            s.exec(select(Step).where(Step.plan_id == plan_id).order_by(col(Step.position)))
        )
    )


def failing(*, status: int | None = None, error: BaseException | None = None) -> Any:
    """A responder: calls whose args say ``fail`` fail (an error, or a result with ``status``)."""

    def respond(call: ToolCall) -> ToolResult:
        if not call.args.get("fail"):
            return ok_result(call)
        if error is not None:
            raise error
        return ToolResult(
            ok=False, status=status, output={}, summary="failed", duration_ms=1.0, cost_usd=0.0
        )

    return respond


# --- format and loading -------------------------------------------------------------------


def test_a_playbook_loads_with_every_field(tmp_path: Path) -> None:
    write(
        tmp_path,
        "full",
        playbook(
            id="full",
            description="all of it",
            match='{tools: ["fake.*"], error_codes: [tool_timeout, http_503]}',
            steps='[{id: a, title: "Probe {service}", tool: fake.read, '
            'args: {x: "{service}"}, risk: low}]',
        ),
    )
    loaded = load_playbooks(tmp_path, params={"service"})
    assert loaded.problems == []
    found = loaded.playbooks["full"]
    assert found.failure_mode is FailureMode.TOOL_FLAKY
    assert found.match is not None
    assert found.match.tools == ("fake.*",)
    assert found.specificity == 2
    assert found.steps[0].args == {"x": "{service}"}
    assert found.manual == ("Look at {tool_action}.",)


@pytest.mark.parametrize("root", ["runbooks", "bot/demo/runbooks"])
def test_the_shipped_playbooks_pass_every_check_and_cover_every_mode(root: str) -> None:
    folder = REPO / root
    runbooks, problems = load_folder(folder)
    assert problems == []
    config = OpsgateConfig(runbooks=folder)
    tools = build_registry(config, signer=GrantSigner(b"k" * 32), clock=FakeClock())
    loaded = check_playbooks(config, runbooks, tools)
    assert loaded.problems == []
    assert {p.failure_mode for p in loaded.playbooks.values()} == set(FailureMode)
    stale = [p for p in loaded.playbooks.values() if p.failure_mode is FailureMode.STALE_CONTEXT]
    assert stale[0].replan


def test_the_demo_ships_the_same_playbooks_as_the_repository() -> None:
    ours = sorted(p.name for p in (REPO / "runbooks" / "recovery").glob("*.yaml"))
    demo = sorted(p.name for p in (REPO / "bot/demo/runbooks/recovery").glob("*.yaml"))
    assert ours == demo
    assert ours


BROKEN = [
    pytest.param(
        playbook(failure_mode="tool_flakey"),
        4,
        "failure_mode",
        "Input should be 'tool_flaky'",
        id="unknown-mode",
    ),
    pytest.param(
        playbook(manual='\n  - "fine"\n  - "Do {thing}"'),
        7,
        "manual[1]",
        "{thing} is not a fact of the failure nor a runbook parameter; use {error}",
        id="unknown-placeholder",
    ),
    pytest.param(
        playbook(steps='\n  - {id: a, title: A, tool: fake.read, args: {q: "{error}"}, risk: low}'),
        7,
        "steps[0].args",
        "{error} cannot fill step args",
        id="free-text-in-args",
    ),
    pytest.param(
        playbook(match="\n  error_codes: [tool_failed, grant_expired]"),
        7,
        "match.error_codes[1]",
        "a tool_flaky failure never carries 'grant_expired'; use tool_failed",
        id="code-of-another-mode",
    ),
    pytest.param(
        playbook(replan="true"),
        6,
        "replan",
        "replan applies to stale_context only",
        id="replan-outside-stale",
    ),
    pytest.param(
        playbook(
            failure_mode="in_doubt",
            steps="\n  - {id: a, title: A, tool: fake.read, risk: low}",
        ),
        6,
        "steps",
        "never automates around a step whose fate is unknown",
        id="steps-for-in-doubt",
    ),
    pytest.param(
        playbook(manual=None),
        1,
        "(document)",
        "give manual steps, automated steps",
        id="nothing-to-do",
    ),
    pytest.param(
        playbook(
            steps="\n  - {id: a, title: A, tool: fake.read, risk: low}"
            "\n  - {id: a, title: B, tool: fake.read, risk: low}"
        ),
        8,
        "steps[1].id",
        "step ids must be unique",
        id="duplicate-step-id",
    ),
    pytest.param(
        playbook(match='{tools: ["HTTP.*"]}'),
        6,
        "match.tools[0]",
        "should match pattern",
        id="bad-tool-glob",
    ),
    pytest.param(
        playbook(failure_mode="stale_context", match='{tools: ["http.*"]}'),
        6,
        "match.tools",
        "a stale plan has no failing tool",
        id="tools-for-stale",
    ),
]


@pytest.mark.parametrize(("text", "line", "where", "message"), BROKEN)
def test_a_broken_playbook_is_reported_with_its_line_and_what_to_change(
    tmp_path: Path, text: str, line: int, where: str, message: str
) -> None:
    path = write(tmp_path, "broken", text)
    write(tmp_path, "good", playbook(id="good", failure_mode="in_doubt"))
    loaded = load_playbooks(tmp_path, params={"service"})
    assert [(p.source, p.line, p.where) for p in loaded.problems] == [(str(path), line, where)]
    assert message in loaded.problems[0].message
    assert list(loaded.playbooks) == ["good"]  # the broken file is left out, the rest loads


def test_a_duplicate_id_and_an_ambiguous_match_name_the_other_file(tmp_path: Path) -> None:
    first = write(tmp_path, "a", playbook(id="one", match='{tools: ["fake.*"]}'))
    second = write(tmp_path, "b", playbook(id="one", match="{error_codes: [tool_timeout]}"))
    third = write(tmp_path, "c", playbook(id="three", match="{error_codes: [tool_timeout]}"))
    write(tmp_path, "d", playbook(id="four", match='{tools: ["other.*"], error_codes: [x]}'))
    loaded = load_playbooks(tmp_path, params=())
    found = {(p.source, p.line, p.where): p.message for p in loaded.problems}
    assert f"used by another file ({first})" in found[(str(second), 1, "id")]
    assert f"as specific as playbook 'one' ({first})" in found[(str(third), 6, "match")]
    assert "narrow one of them" in found[(str(third), 6, "match")]
    assert sorted(loaded.playbooks) == ["one", "three"]  # ambiguous ones stay; lower id wins
    assert len(found) == 3  # d: its code does not fit tool_flaky, nothing else
    assert "never carries 'x'" in next(m for k, m in found.items() if k[0].endswith("d.yaml"))


def test_check_reports_unknown_actions_bad_args_and_globs_with_lines(tmp_path: Path) -> None:
    write(tmp_path / "runbooks", "web", (REPO / "runbooks" / "web-restart.yaml").read_text())
    path = write(
        tmp_path / "runbooks" / "recovery",
        "tools",
        playbook(
            match='{tools: ["htp.*"]}',
            steps="\n  - {id: a, title: A, tool: http.delete, args: {}, risk: low}"
            '\n  - {id: b, title: B, tool: http.get, args: {uri: "x"}, risk: low}',
        ),
    )
    config = tmp_path / "opsgate.yaml"
    config.write_text("runbooks: ./runbooks\n")
    report = check_all(
        config, lambda cfg: build_registry(cfg, signer=GrantSigner(b"k" * 32), clock=FakeClock())
    )
    found = [(p.source, p.line, p.where) for p in report.problems]
    assert found == [
        (str(path), 6, "match.tools[0]"),
        (str(path), 8, "steps[0].tool"),
        (str(path), 9, "steps[1].args.url"),  # each refused argument on its own
        (str(path), 9, "steps[1].args.uri"),
    ]
    messages = [p.message for p in report.problems]
    assert "'htp.*' matches no tool action; known actions: http.get, http.post" in messages[0]
    assert "unknown action 'http.delete'" in messages[1]
    assert messages[2] == "http.get needs the argument 'url'; add it"
    assert messages[3] == "http.get takes no argument 'uri' (it takes: url, headers, timeout_s)"
    assert "web-restart" in report.runbooks  # runbooks load whatever the playbooks say


def test_a_configured_playbook_folder_that_does_not_exist_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path / "runbooks", "web", (REPO / "runbooks" / "web-restart.yaml").read_text())
    config = tmp_path / "opsgate.yaml"
    config.write_text("runbooks: ./runbooks\nplaybooks: ./missing\n")
    report = check_all(
        config, lambda cfg: build_registry(cfg, signer=GrantSigner(b"k" * 32), clock=FakeClock())
    )
    assert [(p.source, p.message) for p in report.problems] == [
        (str(tmp_path / "missing"), "playbook folder does not exist")
    ]


def test_playbook_placeholders_may_use_any_runbooks_parameters() -> None:
    runbooks, _ = load_folder(REPO / "runbooks")
    assert runbook_params(runbooks.values()) == {"service"}


# --- selection ----------------------------------------------------------------------------


def _pb(pid: str, match: dict[str, Any] | None, mode: str = "tool_flaky") -> Playbook:
    return Playbook.model_validate(
        {
            "id": pid,
            "version": 1,
            "title": pid,
            "failure_mode": mode,
            "match": match,
            "manual": ["x"],
        }
    )


def test_the_most_specific_playbook_wins() -> None:
    books = [
        _pb("any", None),
        _pb("http", {"tools": ["http.*"]}),
        _pb("timeout", {"error_codes": ["tool_timeout"]}),
        _pb("http-timeout", {"tools": ["http.*"], "error_codes": ["tool_timeout", "http_504"]}),
        _pb("elsewhere", None, mode="permission_error"),
    ]

    def pick(tool: str, *codes: str) -> str | None:
        chosen = select_playbook(books, FailureMode.TOOL_FLAKY, tool_action=tool, codes=codes)
        return chosen.id if chosen else None

    assert pick("http.get", "tool_timeout") == "http-timeout"
    assert pick("http.get", "expect_not_met", "http_504") == "http-timeout"
    assert pick("http.get", "tool_failed") == "http"
    assert pick("shell.run", "tool_timeout") == "timeout"
    assert pick("shell.run", "tool_failed") == "any"
    assert select_playbook(books[1:4], FailureMode.TOOL_FLAKY, tool_action="x.y", codes=()) is None
    assert select_playbook(books, FailureMode.IN_DOUBT, tool_action="http.get", codes=()) is None


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("http.*", "http.get", True),
        ("*.get", "http.*", True),
        ("ht*", "*tp.get", True),
        ("http.?et", "http.get", True),
        ("http.*", "shell.*", False),
        ("*.get", "*.post", False),
        ("http.get", "http.gets", False),
        ("*", "anything.at_all", True),
    ],
)
def test_globs_overlap_when_one_tool_action_matches_both(a: str, b: str, overlap: bool) -> None:
    assert globs_overlap(a, b) is overlap
    assert globs_overlap(b, a) is overlap


def test_equally_specific_playbooks_are_ambiguous_only_when_a_failure_fits_both() -> None:
    assert ambiguous(_pb("a", None), _pb("b", None))
    assert ambiguous(_pb("a", {"tools": ["http.*"]}), _pb("b", {"error_codes": ["tool_failed"]}))
    assert not ambiguous(_pb("a", {"tools": ["http.*"]}), _pb("b", {"tools": ["shell.*"]}))
    assert not ambiguous(
        _pb("a", {"error_codes": ["tool_failed"]}), _pb("b", {"error_codes": ["tool_timeout"]})
    )
    assert not ambiguous(_pb("a", None), _pb("b", {"tools": ["http.*"]}))
    assert not ambiguous(_pb("a", None), _pb("b", None, mode="permission_error"))


# --- applying them ------------------------------------------------------------------------


async def test_a_flaky_tool_applies_its_playbook_and_runs_the_recovery_plan(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    fake = FakeTool(responses=failing(error=ToolFailed("connection reset")))
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read", "args": {"fail": True}},
        playbooks={"flaky": FLAKY},
    )
    planes.append(cp)
    opened = await cp.open_incident(text="checkout wobbles", requester=REQUESTER)

    first, recovery = await plans_of(cp, opened.incident_id)
    assert first.status == "failed"
    assert len(fake.calls) == 3 + 1  # three attempts of the failing read, then the probe
    assert fake.calls[-1].args == {"probe": "checkout"}
    assert recovery.version == 2
    assert recovery.runbook_id == "playbook:flaky"
    assert recovery.runbook_version == 3
    assert recovery.status == "succeeded"
    assert recovery.params == {"service": "checkout"}
    assert recovery.requester == REQUESTER
    assert recovery.correlation_id == first.correlation_id
    assert recovery.knowledge_pins["playbook:flaky"] == 1
    assert "policy:pack" in recovery.knowledge_pins
    [probe] = await steps_of(cp, recovery.id)
    assert (probe.title, probe.read_only, probe.status) == (
        "Probe checkout after step 0",
        True,
        "succeeded",
    )

    [event] = await applied(cp)
    assert event.plan_id == first.id
    assert event.code == "tool_flaky"
    assert event.detail["playbook"] == "flaky"
    assert event.detail["version"] == 3
    assert event.detail["knowledge_version"] == 1
    assert event.detail["recovery_plan_id"] == recovery.id
    [message] = await messages(cp)
    assert message["manual"] == [
        "'step 0' (fake.read) on checkout failed: tool_failed: connection reset",
        "Check checkout by hand.",
    ]
    assert message["mode"] == "tool_flaky"
    assert message["plan"]["plan_version"] == 2
    assert message["plan"]["steps"] == [
        {"title": "Probe checkout after step 0", "tool_action": "fake.read", "risk": "low"}
    ]
    proposed = await rows(cp, AuditEvent, AuditEvent.event == "plan_proposed")
    assert [e.detail.get("recovers") for e in proposed] == [None, first.id]
    trail = [e.event for e in await cp.audit_trail(first.id)]
    assert trail[-3:] == ["plan_finished", "plan_escalated", "playbook_applied"]


async def test_a_5xx_answer_is_a_flaky_tool_and_its_status_narrows_the_match(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    fake = FakeTool(responses=failing(status=503))
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read", "args": {"fail": True}, "expect": {"ok": True}},
        playbooks={
            "any": playbook(id="any", manual='["generic"]'),
            "unavailable": playbook(
                id="unavailable", match="{error_codes: [http_503]}", manual='["it said 503"]'
            ),
        },
    )
    planes.append(cp)
    await cp.open_incident(text="checkout wobbles", requester=REQUESTER)
    [event] = await applied(cp)
    assert event.detail["playbook"] == "unavailable"
    [message] = await messages(cp)
    assert message["manual"] == ["it said 503"]
    assert message["error_code"] == "expect_not_met"
    assert message["plan"] is None  # manual steps only: no recovery plan


@pytest.mark.parametrize(
    "responder",
    [
        pytest.param(
            failing(error=GrantError("the grant expired", code=ErrorCode.GRANT_EXPIRED)),
            id="grant",
        ),
        pytest.param(failing(status=403), id="http-403"),
    ],
)
async def test_a_refused_call_applies_the_permission_playbook(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane], responder: Any
) -> None:
    fake = FakeTool(responses=responder)
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read", "args": {"fail": True}, "expect": {"ok": True}},
        playbooks={
            "flaky": FLAKY,
            "denied": playbook(
                id="denied",
                failure_mode="permission_error",
                manual='["Fix the credential for {tool_action} ({error_code})."]',
            ),
        },
    )
    planes.append(cp)
    opened = await cp.open_incident(text="checkout wobbles", requester=REQUESTER)
    [event] = await applied(cp)
    assert (event.code, event.detail["playbook"]) == ("permission_error", "denied")
    [message] = await messages(cp)
    code = message["error_code"]
    assert message["manual"] == [f"Fix the credential for fake.read ({code})."]
    assert len(await plans_of(cp, opened.incident_id)) == 1


async def test_a_failed_compensation_applies_its_playbook(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    fake = FakeTool(responses=failing(error=ToolFailed("undo refused", retryable=False)))
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        {
            "tool": "fake.read",
            "args": {"n": 0},
            "compensate": {"tool": "fake.read", "args": {"fail": True}, "risk": "low"},
        },
        {"tool": "fake.read", "args": {"n": 1}, "expect": {"json": {"never": True}}},
        playbooks={
            "flaky": FLAKY,
            "undo": playbook(
                id="undo",
                failure_mode="compensation_failed",
                manual='["Restore {service} by hand: {step_title} said {error}."]',
            ),
        },
    )
    planes.append(cp)
    opened = await cp.open_incident(text="checkout wobbles", requester=REQUESTER)
    [first] = await plans_of(cp, opened.incident_id)
    assert first.status == "failed"
    [event] = await applied(cp)
    assert (event.code, event.detail["playbook"]) == ("compensation_failed", "undo")
    [message] = await messages(cp)
    assert message["manual"] == ["Restore checkout by hand: Undo step 0 said undo refused."]


async def test_a_stale_plan_at_the_vote_is_replanned_from_the_current_knowledge(
    db_url: str, tmp_path: Path, clock: FakeClock, fake: FakeTool, planes: list[ControlPlane]
) -> None:
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.write", "risk": "medium"},
        playbooks={
            "stale": playbook(
                id="stale",
                failure_mode="stale_context",
                replan="true",
                manual='["Knowledge changed: {error}"]',
            )
        },
    )
    planes.append(cp)
    opened = await cp.open_incident(text="checkout wobbles", requester=REQUESTER)
    nonce = await pending_nonce(cp)
    runbook = tmp_path / "rb" / "svc.yaml"
    runbook.write_text(runbook.read_text().replace("title: step 0", "title: step zero"))
    assert await cp.load_knowledge() == []

    outcome = await cp.vote(nonce=nonce, voter=APPROVER_A, choice=VoteChoice.APPROVE)
    assert outcome.code == "plan_stale"
    stale, fresh = await plans_of(cp, opened.incident_id)
    assert stale.status == "stale"
    assert fresh.runbook_id == "svc-fix"
    assert fresh.knowledge_pins["runbook:svc-fix"] == 2
    assert fresh.status == "waiting"  # its medium step asks for approval like any plan
    [step] = await steps_of(cp, fresh.id)
    assert (step.title, step.status) == ("step zero", "awaiting_approval")
    assert fake.calls == []
    [message] = await messages(cp)
    assert message["replan"] is True
    assert message["plan"]["runbook_id"] == "svc-fix"
    assert message["manual"][0].startswith("Knowledge changed: Knowledge this plan was built")

    await cp.vote(
        nonce=await pending_nonce(cp, besides=nonce), voter=APPROVER_A, choice=VoteChoice.APPROVE
    )
    assert [c.action for c in fake.calls] == ["write"]
    assert (await cp.plan_view(fresh.id)).status == "succeeded"


async def test_a_plan_gone_stale_between_steps_runs_the_playbooks_steps(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    tool = HeldTool()
    stale = playbook(
        id="stale",
        failure_mode="stale_context",
        steps='[{id: look, title: "Look at {service}", tool: fake.read, args: {look: here}, '
        "risk: low}]",
    )
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        tool,
        {"tool": "fake.read"},
        {"tool": "fake.read"},
        playbooks={"stale": stale},
    )
    planes.append(cp)
    opening = asyncio.create_task(cp.open_incident(text="checkout wobbles", requester=REQUESTER))
    await tool.started.wait()
    runbook = tmp_path / "rb" / "svc.yaml"
    runbook.write_text(runbook.read_text().replace("title: step 1", "title: step one"))
    assert await cp.load_knowledge() == []
    tool.release.set()
    opened = await opening

    first, recovery = await plans_of(cp, opened.incident_id)
    assert first.status == "stale"
    assert recovery.runbook_id == "playbook:stale"
    assert recovery.status == "succeeded"
    assert [c.args for c in tool.calls] == [{}, {"look": "here"}]  # step 1 never ran


async def test_an_in_doubt_step_gets_manual_steps_only(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    write(
        tmp_path / "rb" / "recovery",
        "doubt",
        playbook(
            id="doubt",
            failure_mode="in_doubt",
            manual="[\"Did '{step_title}' ({tool_action}) take effect?\"]",
        ),
    )
    tool = HeldTool()
    a, b = await two_replicas(
        db_url, tmp_path, clock, tool, {"tool": "fake.write", "risk": "medium"}
    )
    try:
        opened = await a.open_incident(text="fakefix", requester=REQUESTER)
        voting = asyncio.create_task(
            a.vote(nonce=await pending_nonce(a), voter=APPROVER_A, choice=VoteChoice.APPROVE)
        )
        await tool.started.wait()
        await die(voting)
        clock.advance(LEASE_S + 1)
        assert await b.reconcile() == 1

        [event] = await applied(b)
        assert (event.code, event.detail["playbook"]) == ("in_doubt", "doubt")
        assert event.detail["recovery_plan_id"] is None
        [message] = await messages(b)
        assert message["manual"] == ["Did 'step 0' (fake.write) take effect?"]
        assert len(await plans_of(b, opened.incident_id)) == 1  # nothing automated
        cards = await rows(b, OutboxMessage, OutboxMessage.kind == "approval_requested")
        assert [c.payload["purpose"] for c in cards] == ["step", "in_doubt"]
    finally:
        await a.close()
        await b.close()


async def test_an_orphan_in_doubt_at_close_gets_the_playbook_too(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    write(
        tmp_path / "rb" / "recovery",
        "doubt",
        playbook(id="doubt", failure_mode="in_doubt", manual='["Check {tool_action}."]'),
    )
    tool = HeldTool()
    a, b = await two_replicas(
        db_url, tmp_path, clock, tool, {"tool": "fake.write", "risk": "medium"}
    )
    try:
        opened = await a.open_incident(text="fakefix", requester=REQUESTER)
        voting = asyncio.create_task(
            a.vote(nonce=await pending_nonce(a), voter=APPROVER_A, choice=VoteChoice.APPROVE)
        )
        await tool.started.wait()
        await die(voting)
        clock.advance(LEASE_S + 1)
        await b.close_incident(incident_id=opened.incident_id, actor=REQUESTER, resolved=False)
        [message] = await messages(b)
        assert message["manual"] == ["Check fake.write."]
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(
    ("step", "plan_status", "step_status"),
    [
        pytest.param(
            "{id: fix, title: Fix it, tool: fake.write, risk: low}",
            "waiting",
            "awaiting_approval",
            id="medium-waits",
        ),
        pytest.param(
            "{id: fix, title: Fix it, tool: fake.read, risk: critical}",
            "halted",
            "denied",
            id="critical-refused",
        ),
    ],
)
async def test_recovery_steps_pass_through_the_policy_gate(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    planes: list[ControlPlane],
    step: str,
    plan_status: str,
    step_status: str,
) -> None:
    fake = FakeTool(responses=failing(error=ToolFailed("down")))
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read", "args": {"fail": True}},
        playbooks={"gate": playbook(id="gate", steps=f"[{step}]")},
    )
    planes.append(cp)
    opened = await cp.open_incident(text="checkout wobbles", requester=REQUESTER)
    _first, recovery = await plans_of(cp, opened.incident_id)
    assert recovery.status == plan_status
    [fix] = await steps_of(cp, recovery.id)
    assert fix.status == step_status
    assert len(fake.calls) == 3  # only the failing read's attempts: the fix did not run
    assert len(await applied(cp)) == 1  # a denial is no failure mode


async def test_a_recovery_plans_own_failure_triggers_no_playbook(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    fake = FakeTool(responses=failing(error=ToolFailed("still down", retryable=False)))
    again = FLAKY.replace('args: {probe: "{service}"}', "args: {fail: true}")
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read", "args": {"fail": True}},
        playbooks={"flaky": again},
    )
    planes.append(cp)
    opened = await cp.open_incident(text="checkout wobbles", requester=REQUESTER)
    plans = await plans_of(cp, opened.incident_id)
    assert [(p.version, p.status) for p in plans] == [(1, "failed"), (2, "failed")]
    assert len(await applied(cp)) == 1
    assert len(await messages(cp)) == 1
    assert len(fake.calls) == 2  # one call each, then humans


async def test_steps_that_need_a_missing_parameter_are_not_run_and_the_thread_says_why(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    fake = FakeTool(responses=failing(error=ToolFailed("down")))
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read", "args": {"fail": True}},
        playbooks={"flaky": FLAKY},
    )
    planes.append(cp)
    opened = await cp.open_incident(text="fakefix please", requester=REQUESTER)  # no {service}
    assert len(await plans_of(cp, opened.incident_id)) == 1
    [message] = await messages(cp)
    assert "need {service}" in message["skipped"]
    assert message["manual"][1] == "Check (service unknown) by hand."


async def test_a_failure_of_no_known_mode_applies_nothing(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    fake = FakeTool(responses=failing(status=200))
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read", "args": {"fail": True}, "expect": {"ok": True}},
        playbooks={"flaky": FLAKY, "any": playbook(id="any", failure_mode="permission_error")},
    )
    planes.append(cp)
    await cp.open_incident(text="checkout wobbles", requester=REQUESTER)
    assert await applied(cp) == []
    assert await messages(cp) == []


async def test_a_broken_playbook_never_stops_runbooks_or_the_other_playbooks_loading(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    write(tmp_path / "rb" / "recovery", "broken", playbook(id="broken", failure_mode="nope"))
    write(tmp_path / "rb" / "recovery", "flaky", FLAKY)
    write(
        tmp_path / "rb", "svc", SERVICE_RUNBOOK.replace("STEPS", steps_yaml({"tool": "http.get"}))
    )
    cp = ControlPlane(
        db=Database(db_url),
        config=make_config(tmp_path / "rb"),
        tools=build_registry(
            make_config(tmp_path / "rb"), signer=GrantSigner(b"k" * 32), clock=clock
        ),
        pack=default_pack(),
        signer=GrantSigner(b"k" * 32),
        clock=clock,
    )
    try:
        problems = await cp.start()
        assert [(p.where, p.line) for p in problems] == [("failure_mode", 4)]
        assert "svc-fix" in cp.snapshot.runbooks
        docs = await rows(cp, Knowledge, Knowledge.kind == "playbook")
        assert [(d.key, d.version) for d in docs] == [("flaky", 1)]
    finally:
        await cp.close()


async def test_a_recovery_plan_runs_under_the_scopes_of_the_runbook_it_recovers(
    db_url: str, tmp_path: Path, clock: FakeClock, planes: list[ControlPlane]
) -> None:
    """Staged trust: the runbook's changes are in shadow, so the recovery plan's fix is only
    proposed (in the global supervised mode it would wait for an approval instead)."""
    fake = FakeTool(responses=failing(error=ToolFailed("down")))
    cp = await plane(
        db_url,
        tmp_path,
        clock,
        fake,
        {"tool": "fake.read", "args": {"fail": True}},
        playbooks={
            "gate": playbook(
                id="gate", steps="[{id: fix, title: Fix it, tool: fake.write, risk: low}]"
            )
        },
        rollout={
            "scopes": [
                {"id": "svc", "runbook": "svc-fix", "stage": "shadow", "tools": ["state_changing"]}
            ]
        },
    )
    planes.append(cp)
    opened = await cp.open_incident(text="checkout wobbles", requester=REQUESTER)
    _first, recovery = await plans_of(cp, opened.incident_id)
    assert (_first.runbook_id, recovery.runbook_id) == ("svc-fix", "playbook:gate")
    assert recovery.status == "shadow"
    [fix] = await steps_of(cp, recovery.id)
    assert (fix.decision_code, (fix.rollout or {}).get("scope")) == ("shadow_mode", "svc")
    assert len(fake.calls) == 3  # only the failing read's attempts: the fix did not run
