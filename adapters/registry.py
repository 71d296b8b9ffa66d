"""The registry of tools the control plane may call, looked up by ``tool.action`` name."""

from collections.abc import Iterable

from adapters.base import ActionSpec, Tool, ToolSpec
from adapters.errors import UnknownAction


class ToolRegistry:
    """Tools by name; resolves ``tool.action`` names to a tool and its action spec."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        """Start with ``tools`` registered."""
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        """Add ``tool``; a second tool with the same name is a configuration error."""
        name = tool.spec.name
        if name in self._tools:
            raise ValueError(f"a tool named {name!r} is already registered")
        self._tools[name] = tool

    def get(self, name: str) -> Tool:
        """The tool called ``name``; raises :class:`UnknownAction` listing the known tools."""
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools)) or "none"
            raise UnknownAction(f"no tool named {name!r}; known tools: {known}") from None

    def action(self, tool_action: str) -> tuple[Tool, ActionSpec]:
        """The tool and action spec for a name like ``http.get``."""
        tool_name, dot, action_name = tool_action.partition(".")
        tool = self._tools.get(tool_name) if dot else None
        if tool is None or action_name not in tool.spec.actions:
            known = ", ".join(self.names()) or "none"
            raise UnknownAction(f"unknown action {tool_action!r}; known actions: {known}")
        return tool, tool.spec.actions[action_name]

    def names(self) -> list[str]:
        """Every ``tool.action`` name, sorted."""
        return sorted(f"{spec.name}.{a}" for spec in self.specs() for a in spec.actions)

    def specs(self) -> list[ToolSpec]:
        """The specs of every registered tool, sorted by name."""
        return [self._tools[name].spec for name in sorted(self._tools)]

    def describe(self) -> str:
        """One line per action with its risk and traits, for ``opsgate check``."""
        lines = []
        for spec in self.specs():
            for name in sorted(spec.actions):
                action = spec.actions[name]
                traits = [
                    f"risk={action.risk}",
                    "read-only" if action.read_only else "writes",
                    "idempotent" if action.idempotent else "not idempotent",
                ]
                if action.compensation:
                    traits.append(f"undo={spec.name}.{action.compensation}")
                line = f"{spec.name}.{name}  {'  '.join(traits)}"
                lines.append(f"{line}  - {action.description}" if action.description else line)
        return "\n".join(lines)

    async def aclose(self) -> None:
        """Close every tool that holds resources (sessions, connections)."""
        for tool in self._tools.values():
            close = getattr(tool, "aclose", None)
            if close is not None:
                await close()
