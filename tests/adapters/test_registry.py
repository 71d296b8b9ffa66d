"""The tool registry: lookup by tool.action, listings and closing."""

import pytest

from adapters import ToolRegistry, UnknownAction
from adapters.testing import FakeTool, NoopTool
from tests.adapters.conftest import make_call


def test_action_resolves_tool_and_spec() -> None:
    fake = FakeTool()
    registry = ToolRegistry([fake])
    tool, spec = registry.action("fake.write")
    assert tool is fake
    assert spec.compensation == "undo"


@pytest.mark.parametrize("name", ["fake.explode", "other.read", "fake", "", ".read"])
def test_unknown_actions_list_the_known_ones(name: str) -> None:
    registry = ToolRegistry([FakeTool(), NoopTool()])
    with pytest.raises(UnknownAction, match=r"known actions: fake\.nuke, .*noop\.write") as info:
        registry.action(name)
    assert info.value.code == "unknown_action"


def test_get_returns_tool_or_lists_known_tools() -> None:
    fake = FakeTool()
    registry = ToolRegistry()
    registry.register(fake)
    assert registry.get("fake") is fake
    with pytest.raises(UnknownAction, match="known tools: fake"):
        registry.get("http")


def test_registering_two_tools_with_one_name_is_refused() -> None:
    registry = ToolRegistry([FakeTool()])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(FakeTool())


def test_specs_and_names_are_sorted() -> None:
    registry = ToolRegistry([NoopTool(), FakeTool()])
    assert [s.name for s in registry.specs()] == ["fake", "noop"]
    assert registry.names()[:2] == ["fake.nuke", "fake.read"]


def test_describe_lists_every_action_with_risk_and_traits() -> None:
    lines = ToolRegistry([FakeTool()]).describe().splitlines()
    assert len(lines) == 4
    assert lines[1] == "fake.read  risk=low  read-only  idempotent  - fake read"
    assert "undo=fake.undo" in lines[3]


async def test_aclose_closes_tools_that_hold_resources() -> None:
    class Closable(FakeTool):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    tool = Closable()
    await ToolRegistry([tool, NoopTool()]).aclose()
    assert tool.closed


async def test_fake_tool_plays_scripted_responses_then_succeeds() -> None:
    fake = FakeTool().fail_times(1)
    with pytest.raises(Exception, match="fake tool failure"):
        await fake.invoke(make_call(), None)
    assert (await fake.invoke(make_call(), None)).ok
    assert len(fake.calls) == 2


async def test_noop_tool_returns_ok_instantly() -> None:
    assert (await NoopTool().invoke(make_call("noop.read"), None)).ok
