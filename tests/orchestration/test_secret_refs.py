"""Credentials in runbooks, results and columns: references kept, literals refused, values
redacted wherever the control plane keeps or logs them."""

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, SQLModel, create_engine

from adapters import ErrorCode, GrantSigner, ToolCall, ToolFailed, ToolRegistry, ToolResult
from adapters.secrets import SecretSource
from adapters.testing import FakeTool
from common import FakeClock
from common.redaction import REDACTED, forget_secrets, register_secret
from common.yamlsrc import load_located
from orchestration.checks import secret_problems
from orchestration.executor import Executor, Ticket
from orchestration.models import Incident, Step
from orchestration.recovery.playbooks import load_playbooks
from orchestration.runbooks import fill, load_runbook, placeholders
from orchestration.telemetry import configure_logging

SLACK = "xoxb-2222222222-QwErTyUiOpAsDfGh"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


RUNBOOK = """\
id: api-call
version: 1
title: Call an API
match:
  patterns: ['(?P<service>[a-z]+) needs a call']
steps:
  - id: call
    title: Call {service}
    tool: http.get
    args:
      url: "https://api.example.com/{service}?key=${secret:API_KEY}"
      headers:
        Authorization: "Bearer ${secret:API_TOKEN}"
    risk: low
"""


def line_with(text_: str, needle: str) -> int:
    return next(i for i, line in enumerate(text_.splitlines(), 1) if needle in line)


def test_references_are_not_placeholders_and_survive_filling(tmp_path: Path) -> None:
    path = tmp_path / "api.yaml"
    path.write_text(RUNBOOK, encoding="utf-8")
    runbook, problems = load_runbook(path)
    assert problems == []
    assert runbook is not None
    args = runbook.steps[0].args
    assert placeholders(args) == {"service"}
    assert fill(args, {"service": "billing"}) == {
        "url": "https://api.example.com/billing?key=${secret:API_KEY}",
        "headers": {"Authorization": "Bearer ${secret:API_TOKEN}"},
    }


@pytest.mark.parametrize(
    ("literal", "where"),
    [
        ('        Authorization: "Bearer abc123"', "args.headers.Authorization"),
        ('        X-Api-Key: "k-12345"', "args.headers.X-Api-Key"),
        (f'        X-Note: "{SLACK}"', "args.headers.X-Note"),
        ('        Authorization: "Bearer {service}"', "args.headers.Authorization"),
    ],
)
def test_a_literal_credential_in_args_is_refused_on_its_line(
    tmp_path: Path, literal: str, where: str
) -> None:
    text_ = RUNBOOK.replace('        Authorization: "Bearer ${secret:API_TOKEN}"', literal)
    path = tmp_path / "api.yaml"
    path.write_text(text_, encoding="utf-8")
    runbook, problems = load_runbook(path)
    assert runbook is None
    (problem,) = problems
    assert problem.line == text_.splitlines().index(literal) + 1
    assert where in problem.message
    assert "${secret:NAME}" in problem.message
    assert "abc123" not in problem.message
    assert SLACK not in problem.message


def test_a_literal_query_credential_is_refused(tmp_path: Path) -> None:
    text_ = RUNBOOK.replace("?key=${secret:API_KEY}", "?access_token=abcdef")
    path = tmp_path / "api.yaml"
    path.write_text(text_, encoding="utf-8")
    runbook, problems = load_runbook(path)
    assert runbook is None
    assert problems[0].line == line_with(text_, "url:")
    assert "args.url holds a literal credential" in problems[0].message


def test_check_reports_an_unknown_secret_with_file_and_line_and_no_value(tmp_path: Path) -> None:
    path = tmp_path / "api.yaml"
    path.write_text(RUNBOOK, encoding="utf-8")
    runbook, _ = load_runbook(path)
    assert runbook is not None
    located = load_located(RUNBOOK, source=str(path))
    source = SecretSource({"OPSGATE_SECRET_API_KEY": "known-value-123"})
    (problem,) = secret_problems(runbook.steps, located=located, source=source)
    assert problem.source == str(path)
    assert problem.line == line_with(RUNBOOK, "Authorization:")
    assert "${secret:API_TOKEN} is not set" in problem.message
    assert "OPSGATE_SECRET_API_TOKEN" in problem.message
    assert "known-value-123" not in str(problem)


def leaky(call: ToolCall) -> ToolResult:
    return ToolResult(
        ok=True,
        status=200,
        output={"body": f"token={SLACK}", "config": {"api_key": "k-999", "tokens": 7}},
        summary=f"answered with {SLACK}",
        duration_ms=1.0,
        cost_usd=0.01,
        tokens=7,
    )


def ticket(signer: GrantSigner, clock: FakeClock, **kwargs: object) -> Ticket:
    grant = signer.issue(
        grant_id="g",
        tool="fake",
        action="read",
        args_hash="h",
        expires_at=clock.now() + timedelta(minutes=5),
    )
    base: dict[str, object] = {
        "step_id": "s1",
        "tool_action": "fake.read",
        "args": {},
        "idempotent": True,
        "expect": {"status": 200},
        "grant": grant,
        "correlation_id": "c1",
    }
    return Ticket(**{**base, **kwargs})  # type: ignore[arg-type]


def executor(tool: FakeTool, clock: FakeClock) -> Executor:
    async def no_sleep(_s: float) -> None:
        return None

    return Executor(
        tools=ToolRegistry([tool]),
        clock=clock,
        max_attempts=1,
        backoff_initial_s=0.0,
        backoff_max_s=0.0,
        sleep=no_sleep,
    )


async def test_results_enter_orchestration_redacted_after_the_check(clock: FakeClock) -> None:
    signer = GrantSigner(b"k" * 32)
    outcome = await executor(FakeTool(responses=leaky), clock).run(ticket(signer, clock))
    assert outcome.succeeded  # judged on the tool's own answer
    assert outcome.result is not None
    dumped = str(outcome.result.model_dump())
    assert SLACK not in dumped
    assert "k-999" not in dumped
    assert outcome.result.output["config"]["tokens"] == 7
    assert outcome.result.tokens == 7
    assert SLACK not in outcome.attempts[0].summary


async def test_error_messages_enter_orchestration_redacted(clock: FakeClock) -> None:
    signer = GrantSigner(b"k" * 32)
    register_secret("resolved-value-42")
    failing = FakeTool(responses=[ToolFailed("GET https://h/?k=resolved-value-42 failed")])
    outcome = await executor(failing, clock).run(ticket(signer, clock))
    assert outcome.error_code == ErrorCode.TOOL_FAILED
    assert outcome.error is not None
    assert "resolved-value-42" not in outcome.error
    assert "resolved-value-42" not in outcome.check.reason
    assert "resolved-value-42" not in outcome.attempts[0].summary


def test_json_and_text_columns_redact_whatever_writes_them(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    SQLModel.metadata.create_all(engine)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with Session(engine) as session:
        session.add(
            Incident(
                id="i1",
                text=f"checkout is down, {SLACK}",
                requester="U1",
                status="open",
                correlation_id="c",
                created_at=now,
            )
        )
        session.add(
            Step(
                id="s1",
                plan_id="p1",
                position=0,
                key="k",
                title="t",
                tool_action="http.get",
                args={"headers": {"Authorization": "Bearer ${secret:API}"}},
                args_hash="h",
                declared_risk="low",
                risk="low",
                read_only=True,
                idempotent=True,
                status="failed",
                result={"output": {"body": f"password=hunter22 {SLACK}"}},
                error=f"failed with {SLACK}",
            )
        )
        session.commit()
    with engine.connect() as conn:
        stored = [str(row) for row in conn.execute(text("SELECT * FROM incidents"))]
        stored += [str(row) for row in conn.execute(text("SELECT * FROM steps"))]
    engine.dispose()
    flat = "\n".join(stored)
    assert SLACK not in flat
    assert "hunter22" not in flat
    assert "Bearer ${secret:API}" in flat  # references are kept
    assert REDACTED in flat


def test_standard_library_records_are_redacted_with_their_tracebacks() -> None:
    configure_logging(json=True)
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("calling %s", "https://h/?access_token=abcdef123")
        try:
            raise RuntimeError(f"boom with {SLACK}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = sink.getvalue()
    assert "abcdef123" not in out
    assert SLACK not in out
    assert "RuntimeError" in out  # the traceback is kept, redacted
    assert REDACTED in out


def test_a_recovery_playbook_with_a_literal_credential_is_refused(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "runbooks" / "recovery" / "http-flaky.yaml"
    text_ = shipped.read_text(encoding="utf-8").replace(
        'args: {url: "http://127.0.0.1:9000/svc/{service}/health"}',
        'args: {url: "http://127.0.0.1:9000/svc/{service}/health", '
        'headers: {Authorization: "Bearer abc123"}}',
    )
    (tmp_path / "http-flaky.yaml").write_text(text_, encoding="utf-8")
    loaded = load_playbooks(tmp_path, params={"service"})
    assert loaded.playbooks == {}
    (problem,) = loaded.problems
    assert problem.line == line_with(text_, "Authorization")
    assert "literal credential" in problem.message
    assert "abc123" not in problem.message
