"""The pagerduty tool against the local PagerDuty stand-in: requests, refusals, grants."""

from collections.abc import AsyncIterator

import pytest

from adapters import GrantSigner, ToolFailed, guarded
from adapters.errors import ArgsInvalid, ErrorCode, GrantError
from adapters.pagerduty import PagerDutyConfig, PagerDutyTool
from adapters.testing import InMemoryBreakerStore
from adapters.testing.pagerduty import FakePagerDuty
from common import FakeClock
from tests.adapters.conftest import grant_for, make_call

TOKEN = "pd-test-token-0123456789"


@pytest.fixture
async def pd(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakePagerDuty]:
    fake = FakePagerDuty(token=TOKEN)
    await fake.start()
    monkeypatch.setenv("OPSGATE_SECRET_PAGERDUTY_TOKEN", TOKEN)
    yield fake
    await fake.stop()


def _tool(pd: FakePagerDuty, **overrides: str) -> PagerDutyTool:
    raw = {
        "api_url": pd.base_url,
        "token": "${secret:PAGERDUTY_TOKEN}",
        "from_email": "oncall@example.com",
        **overrides,
    }
    return PagerDutyTool.from_config(raw)


async def test_acknowledge_resolve_escalate_and_note(pd: FakePagerDuty) -> None:
    incident = pd.add_incident("checkout-api is down")
    tool = _tool(pd)
    try:
        acked = await tool.invoke(
            make_call("pagerduty.acknowledge", incident_id=incident["id"]), None
        )
        assert acked.output["incident"]["status"] == "acknowledged"
        escalated = await tool.invoke(
            make_call("pagerduty.escalate", incident_id=incident["id"], escalation_level=2), None
        )
        assert escalated.output["incident"]["escalation_level"] == 2
        note = await tool.invoke(
            make_call("pagerduty.add_note", incident_id=incident["id"], content="restarted"),
            None,
        )
        assert note.status == 201
        assert note.output["note"]["content"] == "restarted"
        for _ in range(2):  # resolve is idempotent: the second answer is the same
            resolved = await tool.invoke(
                make_call("pagerduty.resolve", incident_id=incident["id"]), None
            )
            assert resolved.output["incident"]["status"] == "resolved"
    finally:
        await tool.aclose()
    method, path, headers = pd.requests[0]
    assert (method, path) == ("PUT", f"/incidents/{incident['id']}")
    assert headers["Authorization"] == f"Token token={TOKEN}"
    assert headers["From"] == "oncall@example.com"
    assert headers["Accept"] == "application/vnd.pagerduty+json;version=2"
    assert [n["content"] for n in pd.notes[incident["id"]]] == ["restarted"]


async def test_refusals_carry_pagerdutys_error(
    pd: FakePagerDuty, monkeypatch: pytest.MonkeyPatch
) -> None:
    incident = pd.add_incident("orders slow")
    tool = _tool(pd)
    try:
        with pytest.raises(ToolFailed, match="404 Not Found \\(code 2100\\): Incident Not Found"):
            await tool.invoke(make_call("pagerduty.resolve", incident_id="PNOPE00"), None)
        await tool.invoke(make_call("pagerduty.resolve", incident_id=incident["id"]), None)
        with pytest.raises(ToolFailed, match="Incident Already Resolved") as resolved:
            await tool.invoke(make_call("pagerduty.acknowledge", incident_id=incident["id"]), None)
        assert resolved.value.retryable is False
        monkeypatch.setenv("OPSGATE_SECRET_PAGERDUTY_TOKEN", "wrong-token-xxxxxxxx")
        with pytest.raises(ToolFailed, match="401 Unauthorized") as unauthorized:
            await tool.invoke(make_call("pagerduty.resolve", incident_id=incident["id"]), None)
        assert "wrong-token" not in str(unauthorized.value)
    finally:
        await tool.aclose()
    stranger = _tool(pd, from_email="nobody@example.com")
    monkeypatch.setenv("OPSGATE_SECRET_PAGERDUTY_TOKEN", TOKEN)
    try:
        with pytest.raises(ToolFailed, match="Requester User Not Found"):
            await stranger.invoke(make_call("pagerduty.resolve", incident_id=incident["id"]), None)
    finally:
        await stranger.aclose()


async def test_stand_in_refuses_a_write_without_from(pd: FakePagerDuty) -> None:
    """The documented 400 when the From header is missing (the tool always sends one)."""
    import aiohttp  # noqa: PLC0415

    incident = pd.add_incident("x")
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{pd.base_url}/incidents/{incident['id']}",
            json={"incident": {"type": "incident_reference", "status": "resolved"}},
            headers={"Authorization": f"Token token={TOKEN}"},
        ) as response,
    ):
        assert response.status == 400
        body = await response.json()
    assert body["error"]["code"] == 2001
    assert "From" in body["error"]["errors"][0]
    assert pd.incidents[incident["id"]]["status"] == "triggered"


def test_config_wants_a_secret_token_and_an_email() -> None:
    with pytest.raises(ValueError, match="secret reference"):
        PagerDutyConfig(token="u+abcdefgh", from_email="a@b.co")
    with pytest.raises(ValueError, match="from_email"):
        PagerDutyTool.from_config({"token": "${secret:PD}", "from_email": "not-an-email"})


async def test_write_without_a_grant_is_refused(pd: FakePagerDuty) -> None:
    incident = pd.add_incident("x")
    clock = FakeClock()
    signer = GrantSigner(b"k" * 32)
    inner = _tool(pd)
    tool = guarded(inner, signer=signer, clock=clock, breakers=InMemoryBreakerStore(clock))
    call = make_call("pagerduty.resolve", incident_id=incident["id"])
    try:
        with pytest.raises(GrantError) as caught:
            await tool.invoke(call, None)
        assert caught.value.code == ErrorCode.GRANT_MISSING
        other = make_call("pagerduty.acknowledge", incident_id=incident["id"])
        with pytest.raises(GrantError) as scope:
            await tool.invoke(call, grant_for(other, signer, clock))
        assert scope.value.code == ErrorCode.GRANT_SCOPE_MISMATCH
        assert pd.requests == []
        result = await tool.invoke(call, grant_for(call, signer, clock))
    finally:
        await inner.aclose()
    assert result.output["incident"]["status"] == "resolved"


async def test_args_are_checked(pd: FakePagerDuty) -> None:
    tool = _tool(pd)
    with pytest.raises(ArgsInvalid, match="incident_id"):
        await tool.invoke(make_call("pagerduty.resolve", incident_id="../admin"), None)
    with pytest.raises(ArgsInvalid, match="escalation_level"):
        await tool.invoke(make_call("pagerduty.escalate", incident_id="PABC123"), None)
    spec = tool.spec
    assert spec.actions["add_note"].idempotent is False
    assert all(not a.read_only for a in spec.actions.values())
    assert spec.actions["resolve"].idempotent
    assert spec.actions["escalate"].idempotent
