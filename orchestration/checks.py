"""``opsgate check``: validate config, runbooks, recovery playbooks and policies; every problem
with file and line."""

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters import AdapterError, ToolRegistry, validate_args
from adapters.secrets import SecretSource, where_to_set
from common.redaction import secret_names
from common.yamlsrc import LocatedYaml, Problem, describe_loc, load_located
from orchestration.config import OpsgateConfig, check_config
from orchestration.errors import ConfigError
from orchestration.recovery.playbooks import (
    ARG_NAMES,
    Playbook,
    PlaybookSet,
    load_playbooks,
    runbook_params,
)
from orchestration.runbooks import Runbook, StepSpec, fill, scan_folder
from policies import Pack, check_pack, default_pack, load_pack


@dataclass
class Report:
    """What ``opsgate check`` found."""

    config: OpsgateConfig | None = None
    pack: Pack | None = None
    runbooks: dict[str, Runbook] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)  # ids of retirement markers
    playbooks: dict[str, Playbook] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def load_policies(config: OpsgateConfig) -> tuple[Pack | None, list[Problem]]:
    """The configured policy pack (or the default) and its problems."""
    if config.policies is None:
        return default_pack(), []
    errors = check_pack(config.policies)
    if errors:
        return None, [
            Problem(
                e.path or str(config.policies),
                e.line,
                getattr(e, "location", "") or "pack",
                e.message,
            )
            for e in errors
        ]
    return load_pack(config.policies), []


def _tool_problems(
    steps: Sequence[StepSpec], *, names: set[str], tools: ToolRegistry, located: LocatedYaml
) -> list[Problem]:
    """Unknown tool actions, args the action refuses, and checks that change state."""
    source = located.source
    problems = []
    sample = dict.fromkeys(names, "example")
    for index, step in enumerate(steps):
        calls: list[tuple[tuple[str | int, ...], str, dict[str, Any]]] = [
            (("steps", index, "tool"), step.tool, step.args)
        ]
        if step.compensate is not None:
            calls.append(
                (("steps", index, "compensate", "tool"), step.compensate.tool, step.compensate.args)
            )
        if step.check is not None:
            calls.append((("steps", index, "check", "tool"), step.check.tool, step.check.args))
        for loc, tool_action, args in calls:
            try:
                _tool, spec = tools.action(tool_action)
                validate_args(spec, fill(args, sample))
            except AdapterError as exc:
                problems.append(
                    Problem(source, located.line_of(loc), ".".join(map(str, loc)), exc.message)
                )
                continue
            if loc[2:3] == ("check",) and not spec.read_only:
                problems.append(
                    Problem(
                        source,
                        located.line_of(loc),
                        ".".join(map(str, loc)),
                        f"a check must be a read-only action; {tool_action} changes state",
                    )
                )
    return problems


def _references(value: Any, loc: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    """Every ``(loc, name)`` of a ``${secret:NAME}`` inside ``value``."""
    if isinstance(value, str):
        return [(loc, name) for name in sorted(secret_names(value))]
    if isinstance(value, Mapping):
        return [ref for key, item in value.items() for ref in _references(item, (*loc, key))]
    if isinstance(value, list | tuple):
        return [ref for i, item in enumerate(value) for ref in _references(item, (*loc, i))]
    return []


def secret_problems(
    steps: Sequence[StepSpec], *, located: LocatedYaml, source: SecretSource | None = None
) -> list[Problem]:
    """References to secrets that are set nowhere, each on its own line (never a value)."""
    secrets = source or SecretSource()
    problems = []
    for index, step in enumerate(steps):
        parts: list[tuple[tuple[str | int, ...], Any]] = [(("steps", index, "args"), step.args)]
        if step.compensate is not None:
            parts.append((("steps", index, "compensate", "args"), step.compensate.args))
        if step.check is not None:
            parts.append((("steps", index, "check", "args"), step.check.args))
        for base, args in parts:
            for loc, name in _references(args, base):
                if secrets.lookup(name) is None:
                    problems.append(
                        Problem(
                            located.source,
                            located.line_of(loc),
                            describe_loc(loc),
                            f"${{secret:{name}}} is not set: {where_to_set(name)}",
                        )
                    )
    return problems


def check_playbooks(
    config: OpsgateConfig, runbooks: Mapping[str, Runbook], tools: ToolRegistry | None
) -> PlaybookSet:
    """The recovery playbooks with every problem: schema, placeholders, ids, ambiguous
    matches and, given ``tools``, actions and args the tools refuse."""
    folder = config.playbook_folder()
    if config.playbooks is not None and not folder.is_dir():
        problem = Problem(str(folder), None, "(folder)", "playbook folder does not exist")
        return PlaybookSet(problems=[problem])
    params = runbook_params(runbooks.values())
    loaded = load_playbooks(folder, params=params)
    if tools is None:
        return loaded
    known = tools.names()
    names = set(ARG_NAMES) | params
    for playbook, located in loaded.parsed:
        loaded.problems.extend(
            _tool_problems(playbook.steps, names=names, tools=tools, located=located)
        )
        for index, pattern in enumerate(playbook.match.tools if playbook.match else ()):
            if not any(fnmatch.fnmatchcase(name, pattern) for name in known):
                loc = ("match", "tools", index)
                loaded.problems.append(
                    Problem(
                        located.source,
                        located.line_of(loc),
                        describe_loc(loc),
                        f"{pattern!r} matches no tool action; known actions: {', '.join(known)}",
                    )
                )
    loaded.problems.sort(key=lambda p: (p.source, p.line or 0))
    return loaded


def check_all(
    config_path: Path | None, tools_for: Callable[[OpsgateConfig], ToolRegistry]
) -> Report:
    """Run every check; ``tools_for(config)`` builds the registry the runbooks must fit."""
    report = Report()
    config, problems = check_config(config_path)
    report.problems += problems
    if config is None:
        return report
    report.config = config
    report.pack, pack_problems = load_policies(config)
    report.problems += pack_problems
    try:
        tools = tools_for(config)
    except ConfigError as exc:
        report.problems.append(Problem(exc.path or config.source, exc.line, "adapters", exc.detail))
        tools = None
    scan = scan_folder(config.runbooks)
    runbooks = scan.runbooks
    report.problems += scan.problems
    report.runbooks = runbooks
    report.retired = sorted(scan.retired)
    if tools is not None:
        checked: set[str] = set()
        for path in sorted([*config.runbooks.glob("*.yaml"), *config.runbooks.glob("*.yml")]):
            runbook_id = _runbook_id(path)
            if runbook_id in runbooks and runbook_id not in checked:
                checked.add(runbook_id)
                runbook = runbooks[runbook_id]
                located = load_located(path.read_text(encoding="utf-8"), source=str(path))
                report.problems += _tool_problems(
                    runbook.steps,
                    names=runbook.match.group_names() | set(runbook.params),
                    tools=tools,
                    located=located,
                )
                report.problems += secret_problems(runbook.steps, located=located)
    playbooks = check_playbooks(config, runbooks, tools)
    report.playbooks = playbooks.playbooks
    report.problems += playbooks.problems
    return report


def _runbook_id(path: Path) -> str | None:
    try:
        data = load_located(path.read_text(encoding="utf-8"), source=str(path)).data
    except Exception:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
