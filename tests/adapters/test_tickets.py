"""The ticket tool against the GitHub and Jira stand-ins: one action set, two backends."""

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters import GrantSigner, ToolFailed, guarded
from adapters.errors import ArgsInvalid, ErrorCode, GrantError
from adapters.testing import InMemoryBreakerStore
from adapters.testing.tickets import FakeGitHub, FakeJira
from adapters.tickets import TicketTool, adf
from common import FakeClock
from tests.adapters.conftest import grant_for, make_call


@pytest.fixture
async def github(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub()
    await fake.start()
    monkeypatch.setenv("OPSGATE_SECRET_GITHUB_TOKEN", fake.token)
    yield fake
    await fake.stop()


@pytest.fixture
async def jira(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeJira]:
    fake = FakeJira()
    await fake.start()
    monkeypatch.setenv("OPSGATE_SECRET_JIRA_API_TOKEN", fake.token)
    yield fake
    await fake.stop()


def github_tool(fake: FakeGitHub, **extra: Any) -> TicketTool:
    return TicketTool.from_config(
        {
            "backend": "github",
            "labels": ["incident"],
            "github": {
                "api_url": fake.base_url,
                "repo": "acme/ops",
                "token": "${secret:GITHUB_TOKEN}",
                **extra,
            },
        }
    )


def jira_tool(fake: FakeJira) -> TicketTool:
    return TicketTool.from_config(
        {
            "backend": "jira",
            "jira": {
                "base_url": fake.base_url,
                "project": "OPS",
                "email": fake.email,
                "token": "${secret:JIRA_API_TOKEN}",
            },
        }
    )


async def test_github_create_comment_close(github: FakeGitHub) -> None:
    tool = github_tool(github)
    try:
        made = await tool.invoke(
            make_call("ticket.create", title="Postmortem", body="timeline", labels=["pm"]), None
        )
        assert made.output["ticket"] == "1"
        assert made.output["url"] == "https://github.com/acme/ops/issues/1"
        await tool.invoke(make_call("ticket.comment", ticket="1", body="more"), None)
        for _ in range(2):  # close is idempotent
            closed = await tool.invoke(make_call("ticket.close", ticket="1"), None)
            assert closed.output["state"] == "closed"
    finally:
        await tool.aclose()
    issue = github.issues[("acme/ops", 1)]
    assert issue["body"] == "timeline"
    assert [label["name"] for label in issue["labels"]] == ["incident", "pm"]
    assert github.comments[("acme/ops", 1)] == ["more"]
    _, path, headers = github.requests[0]
    assert path == "/repos/acme/ops/issues"
    assert headers["Authorization"] == f"Bearer {github.token}"
    assert headers["X-GitHub-Api-Version"] == "2022-11-28"


async def test_github_refusals(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = github_tool(github)
    try:
        with pytest.raises(ToolFailed, match="404 Not Found"):
            await tool.invoke(make_call("ticket.comment", ticket="99", body="x"), None)
        monkeypatch.setenv("OPSGATE_SECRET_GITHUB_TOKEN", "ghp_wrongwrongwrong")
        with pytest.raises(ToolFailed, match="401 Bad credentials") as caught:
            await tool.invoke(make_call("ticket.create", title="x"), None)
        assert caught.value.retryable is False
        assert "ghp_wrong" not in str(caught.value)
        with pytest.raises(ArgsInvalid, match="issue number"):
            await tool.invoke(make_call("ticket.close", ticket="OPS-1"), None)
    finally:
        await tool.aclose()


async def test_github_stand_in_answers_422_validation_shape(github: FakeGitHub) -> None:
    import aiohttp  # noqa: PLC0415

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{github.base_url}/repos/acme/ops/issues",
            json={"body": "no title"},
            headers={"Authorization": f"Bearer {github.token}"},
        ) as response,
    ):
        assert response.status == 422
        body = await response.json()
    assert body["message"] == "Validation Failed"
    assert body["errors"] == [{"resource": "Issue", "field": "title", "code": "missing_field"}]


async def test_jira_create_comment_close_with_adf_and_transitions(jira: FakeJira) -> None:
    tool = jira_tool(jira)
    try:
        made = await tool.invoke(
            make_call("ticket.create", title="Postmortem", body="line one\nline two\n\nnext"),
            None,
        )
        key = made.output["ticket"]
        assert key == "OPS-1"
        await tool.invoke(make_call("ticket.comment", ticket=key, body="a comment"), None)
        closed = await tool.invoke(make_call("ticket.close", ticket=key, comment="done"), None)
        assert "moved to Done" in closed.summary
        again = await tool.invoke(make_call("ticket.close", ticket=key), None)
        assert "already Done" in again.summary
    finally:
        await tool.aclose()
    issue = jira.issues["OPS-1"]
    assert issue["fields"]["status"] == "Done"
    assert jira.text_of(issue["fields"]["description"]) == "line one\nline two\n\nnext"
    assert [jira.text_of(c["body"]) for c in jira.comments["OPS-1"]] == ["a comment", "done"]
    _, _, headers = jira.requests[0]
    expected = base64.b64encode(f"{jira.email}:{jira.token}".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"


async def test_jira_refusals(jira: FakeJira, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = jira_tool(jira)
    try:
        with pytest.raises(ToolFailed, match="404 Issue does not exist"):
            await tool.invoke(make_call("ticket.comment", ticket="OPS-7", body="x"), None)
        monkeypatch.setenv("OPSGATE_SECRET_JIRA_API_TOKEN", "wrong-token-xxxxxxxx")
        with pytest.raises(ToolFailed, match="401"):
            await tool.invoke(make_call("ticket.create", title="x"), None)
    finally:
        await tool.aclose()


async def test_jira_stand_in_wants_adf_and_a_summary(jira: FakeJira) -> None:
    import aiohttp  # noqa: PLC0415

    pair = base64.b64encode(f"{jira.email}:{jira.token}".encode()).decode()
    auth = {"Authorization": f"Basic {pair}"}
    async with aiohttp.ClientSession() as session:
        fields = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "description": "x"}
        async with session.post(
            f"{jira.base_url}/rest/api/3/issue", json={"fields": fields}, headers=auth
        ) as response:
            assert response.status == 400
            body = await response.json()
    assert body["errors"]["summary"] == "You must specify a summary of the issue."
    assert "Atlassian Document" in body["errors"]["description"]
    assert adf("a\nb")["content"][0]["content"][1] == {"type": "hardBreak"}


async def test_ticket_write_without_a_grant_is_refused(github: FakeGitHub) -> None:
    clock = FakeClock()
    signer = GrantSigner(b"k" * 32)
    inner = github_tool(github)
    tool = guarded(inner, signer=signer, clock=clock, breakers=InMemoryBreakerStore(clock))
    call = make_call("ticket.create", title="Postmortem")
    try:
        with pytest.raises(GrantError) as caught:
            await tool.invoke(call, None)
        assert caught.value.code == ErrorCode.GRANT_MISSING
        assert github.requests == []
        made = await tool.invoke(call, grant_for(call, signer, clock))
        assert made.output["ticket"] == "1"
    finally:
        await inner.aclose()


def test_config_needs_its_backend_section_and_secret_tokens() -> None:
    with pytest.raises(ValueError, match="add the jira section"):
        TicketTool.from_config({"backend": "jira"})
    with pytest.raises(ValueError, match="secret reference"):
        TicketTool.from_config(
            {"backend": "github", "github": {"repo": "a/b", "token": "ghp_literal"}}
        )
