"""``${incident:NAME}`` references: bound by the grant as written, filled innermost at call
time from ``ToolCall.context``, never read as secret references."""

import dataclasses

import pytest

from adapters import GrantSigner, guarded
from adapters.errors import ArgsInvalid
from adapters.testing import FakeTool, InMemoryBreakerStore
from common import FakeClock
from common.incident_refs import fill_incident, incident_names, unknown_incident_names
from orchestration.runbooks import fill, placeholders
from tests.adapters.conftest import grant_for, make_call


def _guarded(fake: FakeTool) -> tuple[object, GrantSigner, FakeClock]:
    clock = FakeClock()
    signer = GrantSigner(b"k" * 32)
    return (
        guarded(fake, signer=signer, clock=clock, breakers=InMemoryBreakerStore(clock)),
        signer,
        clock,
    )


async def test_the_tool_gets_the_values_and_the_grant_binds_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPSGATE_SECRET_TOKEN", "s3cret-value-123")
    fake = FakeTool()
    tool, signer, clock = _guarded(fake)
    call = make_call("fake.write", body="T:\n${incident:timeline}", auth="${secret:TOKEN}")
    grant = grant_for(call, signer, clock)  # issued for the references
    typed = "someone typed ${secret:TOKEN}"
    filled = dataclasses.replace(call, context={"timeline": typed})
    await tool.invoke(filled, grant)  # type: ignore[attr-defined]
    (sent,) = fake.calls
    assert sent.args["body"] == f"T:\n{typed}"  # incident text is never resolved as a secret
    assert sent.args["auth"] == "s3cret-value-123"


async def test_unknown_or_missing_incident_data_is_refused_before_the_tool() -> None:
    fake = FakeTool()
    tool, signer, clock = _guarded(fake)
    unknown = make_call("fake.write", body="${incident:password}")
    with pytest.raises(ArgsInvalid, match="unknown incident data password"):
        await tool.invoke(unknown, grant_for(unknown, signer, clock))  # type: ignore[attr-defined]
    missing = make_call("fake.write", body="${incident:timeline}")
    with pytest.raises(ArgsInvalid, match="no incident data for timeline"):
        await tool.invoke(missing, grant_for(missing, signer, clock))  # type: ignore[attr-defined]
    assert fake.calls == []


def test_runbook_fill_keeps_incident_references_and_helpers_find_them() -> None:
    args = {"title": "PM {service}: ${incident:text}", "body": ["${incident:costs}"]}
    assert fill(args, {"service": "api"}) == {
        "title": "PM api: ${incident:text}",
        "body": ["${incident:costs}"],
    }
    assert placeholders(args) == {"service"}
    assert incident_names(args) == {"text", "costs"}
    assert unknown_incident_names({"x": "${incident:nope}"}) == ["nope"]
    assert fill_incident(args, {"text": "t", "costs": "c"})["body"] == ["c"]
