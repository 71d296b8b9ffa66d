"""Registered tool actions as plain data for the agents, with each action's args validation."""

from collections.abc import Mapping
from typing import Any

from adapters import AdapterError, ToolRegistry
from adapters.base import validate_args
from orchestration.agents.planning import ActionInfo


class ActionCatalogue:
    """What the registry offers, read once: the Planner sees this, never the tools."""

    def __init__(self, tools: ToolRegistry) -> None:
        """Describe every action of every registered tool."""
        self._tools = tools
        found: dict[str, ActionInfo] = {}
        for spec in tools.specs():
            for action in spec.actions.values():
                name = f"{spec.name}.{action.name}"
                found[name] = ActionInfo(
                    name=name,
                    description=action.description,
                    risk=action.risk,
                    read_only=action.read_only,
                    schema=action.args_model.model_json_schema(),
                )
        self._actions = found

    @property
    def actions(self) -> Mapping[str, ActionInfo]:
        """Every registered action by its dotted name."""
        return self._actions

    def validate(self, name: str, args: Any) -> dict[str, Any]:
        """``args`` normalised by the action's schema; ValueError says what is wrong."""
        try:
            _, spec = self._tools.action(name)
            return validate_args(spec, args)
        except AdapterError as exc:
            raise ValueError(exc.message) from exc
